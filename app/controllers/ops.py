"""Operations: what this daemon is (``/api/info``) and its Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from msgspec import UNSET

from app import presenters, schemas
from app.daemon import Daemon
from app.metrics import CONTENT_TYPE, Metrics
from app.openapi import api_problems, problems
from app.urls import schema_url


@get(
    "/api/info",
    operation_id="get-info",
    summary="Version, time zone, scheduling state and task briefs",
    tags=["system"],
    responses=api_problems(database=False),
)
async def info(request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]) -> schemas.Info:
    """What this daemon runs and whether its cron loop is alive."""
    brief_schema = schema_url(request, "TaskBrief")
    heartbeat = daemon.scheduler.heartbeat
    started = daemon.started_at or daemon.clock.now()
    return schemas.Info(
        schema=schema_url(request, "Info"),
        version=daemon.version,
        timezone=daemon.config.timezone,
        started_at=presenters.timestamp(started),
        uptime_seconds=round(daemon.uptime, 3),
        scheduler_alive=daemon.scheduler_alive,
        scheduler_heartbeat_at=presenters.timestamp(heartbeat) if heartbeat else UNSET,
        queued_runs=daemon.dispatcher.queued_count(),
        node_id=daemon.node_id,
        tasks=[
            schemas.TaskBrief(
                schema=brief_schema,
                name=task.name,
                kind=task.kind.value,
                cron=task.cron or UNSET,
                next_run_at=presenters.timestamp(when)
                if (when := daemon.next_run_at(task.name)) is not None
                else UNSET,
            )
            for task in sorted(daemon.tasks.values(), key=lambda t: t.name)
        ],
    )


@get(
    "/api/nodes",
    operation_id="list-nodes",
    summary="The daemons of the cluster",
    description="Every daemon (node) sharing the database: alive while it heart-beats within "
    "the lease, judged on the database's clock. Dead nodes stay listed for an hour.",
    tags=["system"],
    responses=api_problems(),
)
async def nodes(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
) -> schemas.NodesBody:
    """The nodes, oldest first."""
    node_schema = schema_url(request, "Node")
    return schemas.NodesBody(
        schema=schema_url(request, "NodesBody"),
        nodes=[
            schemas.Node(
                schema=node_schema,
                id=node.info.id,
                host=node.info.host,
                pid=node.info.pid,
                version=node.info.version,
                started_at=presenters.timestamp(node.started_at),
                heartbeat_at=presenters.timestamp(node.heartbeat_at),
                alive=node.alive,
                running_runs=node.running_runs,
                config_hash=node.info.config_hash,
            )
            for node in await daemon.nodes()
        ],
    )


@post(
    "/api/reload",
    operation_id="reload-config",
    summary="Re-read the config file",
    description="Re-reads the config file on this node (in a cluster, only this one: reload "
    "each node; `GET /api/nodes` shows each node's config hash). New tasks start "
    "scheduling; removed tasks get no new runs while their running runs finish; changed "
    "tasks use the new definition from their next run; services scale to `instances` and "
    "restart one instance at a time where their command changed. `[api] tokens` take effect "
    "at once: a token no longer listed stops working, and so do the dashboard sessions it "
    "opened (tokens from `RUNWARDEN_API_TOKENS` stay as they were at start). An invalid "
    "file changes nothing: 422 with every problem in `errors`.",
    tags=["system"],
    status_code=200,
    responses=api_problems(422),
)
async def reload(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
) -> schemas.ReloadBody:
    """Reload the config file; what changed."""
    done = await daemon.reload_file()
    return schemas.ReloadBody(
        schema=schema_url(request, "ReloadBody"),
        message=f"config reloaded from {daemon.config.path}",
        config_hash=done.config_hash,
        added=done.added,
        removed=done.removed,
        changed=done.changed,
    )


@get(
    "/metrics",
    operation_id="get-metrics",
    summary="Prometheus metrics",
    description="Run counts by task and end reason (from the database), run durations, "
    "queue depth and HTTP latency, in the Prometheus text format.",
    tags=["system"],
    media_type=CONTENT_TYPE,
    responses={
        200: ResponseSpec(
            data_container=str, media_type=CONTENT_TYPE, description="Prometheus text"
        ),
        # Unless [api] metrics_public = true, /metrics needs the bearer token too.
        **problems(401, 429),
    },
)
async def metrics(
    request: Request[Any, Any, Any], daemon: NamedDependency[Daemon]
) -> Response[bytes]:
    """Every metric of this daemon; run counts are read from the database at scrape time."""
    registry: Metrics = request.app.state.metrics
    return Response(await registry.render(daemon), media_type=CONTENT_TYPE)
