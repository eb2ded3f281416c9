"""The client commands: each asks the API, prints, and returns the exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from app.client.api import Api, ClientError, Unreachable, segment
from app.client.output import Output, duration, run_state, when

WAIT_SECONDS = 3600
"""How long one trigger request waits for the run's end before the client polls instead."""
RECONNECT_FOR = 120.0
"""How long ``logs -f`` keeps trying to reach a daemon that went away (a restart)."""
_POLL = 1.0


def run(args: argparse.Namespace) -> int:
    """Run client command ``args.command``; errors become one line on stderr, exit 1."""
    # httpx logs each request at INFO: noise on a terminal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = Output(args.json)
    api = Api(args.url, args.token)
    try:
        return COMMANDS[args.command](api, args, out)
    except ClientError as error:
        print(f"runwarden: {error}", file=sys.stderr)
        return error.code
    except BrokenPipeError:
        # `runwarden logs X | head`: the reader left; nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        api.close()


def cmd_tasks(api: Api, args: argparse.Namespace, out: Output) -> int:
    body = api.json("GET", "/api/tasks", "tasks")
    if out.as_json:
        out.json(body)
        return 0
    rows = [
        [
            task["name"],
            task["kind"],
            task.get("cron", "-"),
            when(task.get("next_run_at")),
            task.get("description", ""),
        ]
        for task in body["tasks"]
    ]
    out.table(["NAME", "KIND", "CRON", "NEXT RUN (UTC)", "DESCRIPTION"], rows)
    return 0


def cmd_runs(api: Api, args: argparse.Namespace, out: Output) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("status", "search"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if args.sort:
        params["sort_field"], params["sort_direction"] = args.sort
    if args.task:
        path, what = f"/api/tasks/{segment(args.task)}/runs", f"task {args.task!r}"
    else:
        path, what = "/api/runs", "runs"
    body = api.json("GET", path, what, params=params)
    if out.as_json:
        out.json(body)
        return 0
    rows = [
        [
            item["id"],
            item["task_name"],
            run_state(item),
            _exit_code(item),
            item.get("triggered_by", ""),
            when(item.get("created_at")),
            duration(item.get("start_at"), item.get("end_at")),
        ]
        for item in body["runs"]
    ]
    columns = ["ID", "TASK", "STATUS", "EXIT", "TRIGGER", "CREATED (UTC)", "DURATION"]
    out.table(columns, rows, f"{len(rows)} of {body['total']} runs" if rows else None)
    return 0


def cmd_run(api: Api, args: argparse.Namespace, out: Output) -> int:
    found = api.run(args.run_id)
    _show_run(found, out)
    return 0


def _show_run(found: dict[str, Any], out: Output) -> None:
    if out.as_json:
        out.json(found)
        return
    pairs = [
        ("id", found["id"]),
        ("task", found["task_name"]),
        ("status", run_state(found)),
        ("exit code", _exit_code(found)),
        ("triggered by", found.get("triggered_by", "-")),
        ("created", when(found.get("created_at"))),
        ("started", when(found.get("start_at"))),
        ("ended", when(found.get("end_at"))),
        ("duration", duration(found.get("start_at"), found.get("end_at"))),
    ]
    if found.get("retry_attempt"):
        pairs.append(("retry", f"{found['retry_attempt']} of run {found.get('retry_of_run_id')}"))
    out.fields(pairs)


def _exit_code(found: dict[str, Any]) -> str:
    return str(found["exit_code"]) if found.get("status") == "ended" else "-"


def cmd_trigger(api: Api, args: argparse.Namespace, out: Output) -> int:
    path = f"/api/tasks/{segment(args.task)}/run"
    what = f"task {args.task!r}"
    if not args.wait:
        created = api.json("POST", path, what)
        if out.as_json:
            out.json(created)
        else:
            out.text(created["id"])
            out.note(f"run {created['id']} of {args.task} is {run_state(created)}")
        return 0
    params = {"wait": "true", "wait_timeout": WAIT_SECONDS}
    timeout = api.http.timeout.read or 30.0
    ended = api.json("POST", path, what, params=params, timeout=WAIT_SECONDS + timeout)
    while ended.get("status") != "ended":
        time.sleep(_POLL)
        ended = api.run(ended["id"])
    _show_run(ended, out)
    return _exit_status(ended)


def _exit_status(ended: dict[str, Any]) -> int:
    """The run's exit code as the command's: 0 for success, else 1-255."""
    if ended.get("end_reason") == "success":
        return 0
    code = int(ended.get("exit_code", 1))
    return code if 1 <= code <= 255 else 1


def cmd_logs(api: Api, args: argparse.Namespace, out: Output) -> int:
    found = api.run(args.run_id)
    base = f"/api/tasks/{segment(found['task_name'])}/runs/{segment(found['id'])}/log"
    what = f"run {args.run_id!r}"
    if args.follow:
        return _follow(api, f"{base}/stream", what, out)
    if out.as_json:
        start = 0
        while True:
            page = api.json("GET", base, what, params={"from": start, "limit": 10000})
            for line in page["lines"]:
                out.json_line(line)
            if not page["lines"]:
                return 0
            start = page["lines"][-1]["n"] + 1
    try:
        with api.http.stream("GET", f"{base}/raw") as response:
            if not response.is_success:
                response.read()
                api.check(response, what)
            for chunk in response.iter_text():
                sys.stdout.write(chunk)
            sys.stdout.flush()
    except httpx.TransportError as error:
        raise api.unreachable(error) from None
    return 0


def _follow(api: Api, path: str, what: str, out: Output) -> int:
    """Print the live output; reconnect after a drop (``Last-Event-ID``) until ``done``."""
    last: str | None = None
    lost_at: float | None = None
    while True:
        try:
            with api.events(path, what, last) as source:
                lost_at = None
                for event in source.iter_sse():
                    if event.event == "line":
                        line = json.loads(event.data)
                        last = event.id or str(line["n"])
                        if out.as_json:
                            out.json_line(line)
                        else:
                            out.text(line["text"])
                    elif event.event == "done":
                        done = json.loads(event.data)
                        if not out.as_json:
                            out.note(f"run ended: {done['status']}")
                        return 0
        except Unreachable as error:
            if lost_at is None:
                out.note("lost the daemon; reconnecting ...")
                lost_at = time.monotonic()
            elif time.monotonic() - lost_at > RECONNECT_FOR:
                raise ClientError(f"{error} (gave up after {RECONNECT_FOR:.0f} s)") from None
        except ClientError as error:
            if not str(error).startswith("503"):
                raise
        # The stream ended without "done" (a daemon shutting down) or is full: try again.
        time.sleep(_POLL)


def cmd_stop(api: Api, args: argparse.Namespace, out: Output) -> int:
    found = api.run(args.run_id)
    path = f"/api/tasks/{segment(found['task_name'])}/runs/{segment(found['id'])}/stop"
    body = api.json("POST", path, f"run {args.run_id!r}")
    if out.as_json:
        out.json(body)
    else:
        out.note(body.get("message") or f"run {found['id']}: stop requested")
    return 0


def cmd_nodes(api: Api, args: argparse.Namespace, out: Output) -> int:
    body = api.json(
        "GET", "/api/nodes", "/api/nodes: this daemon serves no cluster view (an older version?)"
    )
    if out.as_json:
        out.json(body)
        return 0
    rows = [
        [
            str(node.get("id", "?")),
            f"{node.get('host', '?')}:{node.get('pid', '?')}",
            str(node.get("version", "?")),
            when(node.get("started_at")),
            when(node.get("heartbeat_at")),
            "alive" if node.get("alive") else "dead",
            str(node.get("running_runs", 0)),
            str(node.get("config_hash", ""))[:12],
        ]
        for node in body["nodes"]
    ]
    columns = ["ID", "HOST:PID", "VERSION", "STARTED", "HEARTBEAT", "STATE", "RUNNING", "CONFIG"]
    out.table(columns, rows)
    return 0


def cmd_notify(api: Api, args: argparse.Namespace, out: Output) -> int:
    """Send a test notification and wait for its outcome: exit 0 once it was delivered, 1 if
    it was given up or is still being tried after ``--wait`` seconds."""
    name = args.name
    body = api.json(
        "POST",
        f"/api/notifiers/{segment(name)}/test",
        f"notifier {name!r}",
        params={"wait": "true", "wait_timeout": str(args.wait)},
        timeout=args.wait + 10,
    )
    status = body.get("status")
    if out.as_json:
        out.json(body)
    else:
        error = body.get("last_error")
        line = f"notification {body.get('id')} to {name}: {status}"
        sys.stdout.write(line + (f" ({error})" if error else "") + "\n")
    return 0 if status == "delivered" else 1


def cmd_reload(api: Api, args: argparse.Namespace, out: Output) -> int:
    body = api.json("POST", "/api/reload", "the config reload")
    if out.as_json:
        out.json(body)
        return 0
    out.note(body.get("message") or "config reloaded")
    rows = [
        [change, ", ".join(body.get(change) or []) or "-"]
        for change in ("added", "removed", "changed")
    ]
    out.table(["CHANGE", "TASKS AND SERVICES"], rows)
    return 0


COMMANDS: dict[str, Callable[[Api, argparse.Namespace, Output], int]] = {
    "tasks": cmd_tasks,
    "runs": cmd_runs,
    "run": cmd_run,
    "trigger": cmd_trigger,
    "logs": cmd_logs,
    "stop": cmd_stop,
    "nodes": cmd_nodes,
    "notify": cmd_notify,
    "reload": cmd_reload,
}
