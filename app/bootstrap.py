"""The composition root: settings in, a Litestar app with live adapters out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.routes import HTTPRoute

if TYPE_CHECKING:
    from litestar.types import ExceptionHandlersMap

from adapters.clock import SystemClock
from adapters.executor import SubprocessExecutor
from adapters.notify import Senders
from adapters.postgres.cluster import CONTROL_CHANNEL, PostgresCluster
from adapters.postgres.database import create_engine, migrate_async, ping
from adapters.postgres.embedded import EmbeddedPostgres
from adapters.postgres.events import CHANNEL as RUNS_CHANNEL
from adapters.postgres.events import PostgresRunEvents
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.notifications import PostgresOutbox
from adapters.postgres.runs import PostgresRunRepository
from adapters.postgres.sessions import PostgresSessionStore
from adapters.postgres.slots import PostgresSlots
from app.auth_limit import FailureLimiter
from app.config import Config, ConfigError
from app.controllers import ROUTE_HANDLERS
from app.controllers.params import refuse_loose_integers
from app.daemon import Daemon
from app.errors import EXCEPTION_HANDLERS
from app.metrics import Metrics
from app.openapi import finalize_openapi, openapi_config
from app.runtime.membership import ClusterTiming
from app.security import SecurityMiddleware, SecurityOptions
from app.sessions import SessionGate
from app.tokens import LiveTokens
from app.ui import UI_HANDLERS, template_config

log = logging.getLogger("runwarden")

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """How to run: the loaded config plus where the data lives."""

    config: Config
    data_dir: Path = Path(".runwarden")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 9477
    security: SecurityOptions = field(default_factory=SecurityOptions)
    """Auth, proxies, root path; the default refuses every protected request."""


def package_version() -> str:
    try:
        return version("runwarden")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


@asynccontextmanager
async def database(database_url: str | None, data_dir: Path) -> AsyncIterator[str]:
    """The database URL to use: ``DATABASE_URL``, or an embedded server under the data dir."""
    if database_url:
        yield database_url
        return
    embedded = EmbeddedPostgres()
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    url = await asyncio.to_thread(embedded.start, data_dir)
    log.info("embedded PostgreSQL running in %s", data_dir / "pg")
    try:
        yield url
    finally:
        await asyncio.to_thread(embedded.stop)


_reloads: set[asyncio.Task[None]] = set()


def _reload_on_hangup(daemon: Daemon) -> None:
    async def reload() -> None:
        try:
            await daemon.reload_file()
        except ConfigError:
            pass  # logged with every problem; the daemon goes on with what it had
        except Exception:
            log.exception("reloading the config failed")

    task = asyncio.get_running_loop().create_task(reload())
    _reloads.add(task)
    task.add_done_callback(_reloads.discard)


def create_app(settings: Settings) -> Litestar:
    """Build the app; its lifespan starts the database, the dispatcher and the cron loop."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Parts are stopped in the reverse order they were started in.
        async with contextlib.AsyncExitStack() as parts:
            url = await parts.enter_async_context(
                database(settings.database_url, settings.data_dir)
            )
            await migrate_async(url)
            engine = create_engine(url)
            parts.push_async_callback(engine.dispose)
            # One LISTEN connection: run events of every daemon sharing the database.
            run_events = PostgresRunEvents(url)
            daemon = Daemon(
                config=settings.config,
                repo=PostgresRunRepository(engine),
                logs=PostgresLogStore(engine),
                executor=SubprocessExecutor(),
                clock=SystemClock(),
                database_ready=lambda: ping(engine),
                cluster=PostgresCluster(engine),
                slots=PostgresSlots(engine),
                timing=ClusterTiming(
                    heartbeat=settings.config.heartbeat, lease=settings.config.lease
                ),
                version=package_version(),
                on_run_end=metrics.observe_run,
                outbox=PostgresOutbox(engine),
                sender=Senders(),
                base_url=f"http://{settings.host}:{settings.port}{settings.security.root_path}",
                on_notification=metrics.observe_notification,
            )
            # Stop requests and freed slots from other nodes, on the same connection.
            run_events.on_channel(CONTROL_CHANNEL, daemon.on_control)
            run_events.on_channel(RUNS_CHANNEL, daemon.on_run_change)
            await run_events.start()
            parts.push_async_callback(run_events.stop)
            app.state.run_events = run_events
            await daemon.start()
            parts.push_async_callback(daemon.stop)
            # SIGHUP re-reads the config file, as daemons conventionally do.
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, _reload_on_hangup, daemon)
            parts.callback(loop.remove_signal_handler, signal.SIGHUP)
            app.state.daemon = daemon
            app.state.engine = engine
            if sessions is not None:
                # Dashboard sessions: in the shared database; [api] tokens follow reloads.
                sessions.attach(PostgresSessionStore(engine))
                sessions.live.follow(lambda: daemon.config.api_tokens)
            app.state.database_url = url
            # What start-up built lives as long as the daemon: moved out of the collector's
            # reach, a full collection no longer walks it (it paused requests by 50-90 ms).
            gc.collect()
            gc.freeze()
            log.info(
                "runwarden %s serving %d tasks from %s",
                package_version(),
                len(settings.config.tasks),
                settings.config.path,
            )
            yield

    def provide_daemon() -> Daemon:
        return app.state.daemon  # type: ignore[no-any-return]

    metrics = Metrics(package_version())
    # One failure limiter for the API's bearer tokens and the login form: they add up.
    limiter = FailureLimiter.from_env()
    tokens = settings.security.tokens
    sessions = SessionGate(LiveTokens(tokens), limiter) if tokens is not None else None

    def provide_run_events() -> PostgresRunEvents:
        return app.state.run_events  # type: ignore[no-any-return]

    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, *UI_HANDLERS],
        template_config=template_config(),
        dependencies={
            "daemon": Provide(provide_daemon, sync_to_thread=False),
            "run_events": Provide(provide_run_events, sync_to_thread=False),
        },
        exception_handlers=cast("ExceptionHandlersMap", EXCEPTION_HANDLERS),
        before_request=refuse_loose_integers,
        lifespan=[lifespan],
        openapi_config=openapi_config(package_version(), settings.security.root_path),
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[metrics.middleware()],
        state=State({"metrics": metrics, "auth_on": tokens is not None, "sessions": sessions}),
        debug=False,
        # Logging is set up once by app.cli (format with request ids); Litestar would
        # replace the root logger's handlers with its own.
        logging_config=None,
    )
    finalize_openapi(app)
    _mend_options_handlers(app)
    # Around the router, not per route (Litestar's middleware=): 404s, 405s and unknown
    # /api paths get the same headers and the same 401.
    app.asgi_handler = SecurityMiddleware(
        app.asgi_handler, settings.security, limiter, sessions=sessions
    )
    return app


def _mend_options_handlers(app: Litestar) -> None:
    """Make each route's default OPTIONS answer list every method of the route.

    Litestar 2 builds the default OPTIONS handler for the first handler registered on a path
    and keeps it when more are added (litestar-org/litestar#4169, fixed in v3): OPTIONS on
    ``/api/tasks/{taskName}/runs/{runId}`` said ``Allow: DELETE, OPTIONS``, without GET. The
    handler reads the methods of the route it was made for; point it at the final route.
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        handler = route.route_handler_map["OPTIONS"][0]
        for cell in getattr(handler.fn, "__closure__", None) or ():
            if isinstance(cell.cell_contents, HTTPRoute) and cell.cell_contents is not route:
                cell.cell_contents = route
