"""The composition root: settings in, a Litestar app with live adapters out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from adapters.clock import SystemClock
from adapters.executor import SubprocessExecutor
from adapters.notify import Senders
from adapters.postgres.cluster import CONTROL_CHANNEL, PostgresCluster
from adapters.postgres.database import create_engine, migrate_async, ping
from adapters.postgres.embedded import EmbeddedPostgres
from adapters.postgres.events import PostgresRunEvents
from adapters.postgres.logs import PostgresLogStore
from adapters.postgres.notifications import PostgresOutbox
from adapters.postgres.runs import PostgresRunRepository
from adapters.postgres.slots import PostgresSlots
from app.config import Config
from app.controllers import ROUTE_HANDLERS
from app.daemon import Daemon
from app.errors import EXCEPTION_HANDLERS
from app.metrics import Metrics
from app.openapi import finalize_openapi, openapi_config
from app.runtime.membership import ClusterTiming
from app.security import SecurityMiddleware, SecurityOptions

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
            await run_events.start()
            parts.push_async_callback(run_events.stop)
            app.state.run_events = run_events
            await daemon.start()
            parts.push_async_callback(daemon.stop)
            app.state.daemon = daemon
            app.state.engine = engine
            app.state.database_url = url
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

    def provide_run_events() -> PostgresRunEvents:
        return app.state.run_events  # type: ignore[no-any-return]

    app = Litestar(
        route_handlers=ROUTE_HANDLERS,
        dependencies={
            "daemon": Provide(provide_daemon, sync_to_thread=False),
            "run_events": Provide(provide_run_events, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        on_startup=[finalize_openapi],
        openapi_config=openapi_config(package_version(), settings.security.root_path),
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[metrics.middleware()],
        state=State({"metrics": metrics}),
        debug=False,
        # Logging is set up once by app.cli (format with request ids); Litestar would
        # replace the root logger's handlers with its own.
        logging_config=None,
    )
    # Around the router, not per route (Litestar's middleware=): 404s, 405s and unknown
    # /api paths get the same headers and the same 401.
    app.asgi_handler = SecurityMiddleware(app.asgi_handler, settings.security)
    return app
