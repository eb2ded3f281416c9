"""``python -m bench`` (``make bench``): every benchmark, a table, ``bench/results.json``.

Order: seed (or reuse) the history; listing, throughput and idle RSS on a daemon with 10
idle tasks; the dashboard's pages on a daemon serving the seeded tasks; API dispatch on
one node, then on 2 nodes of a cluster; cron; a burst of 1,000 tasks due the same second;
output; reading a 200 MB log back (``bench/logread.py``); failover of a cluster of 2 nodes
(``bench/failover.py``). The benchmarks' own runs (tasks
``bench-*``) are deleted at the end so the seeded history stays as seeded for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import dispatch, failover, listing, load, logread, output, pages, report
from bench.env import ROOT, Usage, bench_database_url, start_daemon
from bench.history import BIG_TASK
from bench.profile import recording, summarize
from bench.seed import ensure_seeded, restore_active

RESULTS = ROOT / "bench" / "results.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
PHASES = ("listing", "pages", "dispatch", "cron", "burst", "output", "logread", "failover")
IDLE_SETTLE_SECONDS = 3.0

IDLE_CONFIG = '[scheduler]\ntimezone = "UTC"\n' + "".join(
    f'\n[tasks.bench-idle-{i}]\ncron = "0 3 1 1 *"\nrun = "true"\n' for i in range(10)
)


def log(message: str) -> None:
    print(message, flush=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def _machine(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgres": f"PostgreSQL {version.split()[0]}",
        "load_before": round(os.getloadavg()[0], 2),
    }


async def cleanup(url: str) -> None:
    """Delete the runs of the benchmarks' own tasks (and their logs, by cascade)."""
    conn = await asyncpg.connect(url)
    try:
        deleted = await conn.execute("DELETE FROM runs WHERE task_name LIKE 'bench-%'")
        await conn.execute("DELETE FROM task_ticks WHERE task_name LIKE 'bench-%'")
        # The cluster's leftovers: slots of the bench's services, nodes killed by failover.
        await conn.execute("DELETE FROM service_slots WHERE service LIKE 'bench-%'")
        await conn.execute("DELETE FROM nodes WHERE state = 'dead'")
        if deleted != "DELETE 0":
            await conn.execute("VACUUM runs")
            await conn.execute("VACUUM run_logs")
            await conn.execute("VACUUM run_log_meta")
    finally:
        await conn.close()


async def restore_active_at(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await restore_active(conn)
    finally:
        await conn.close()


async def listing_phase(url: str, results: dict[str, Any], profile: bool) -> None:
    daemon = start_daemon("listing", IDLE_CONFIG, url)
    try:
        # The daemon settled the seeded running/pending runs at start (crashed, skipped):
        # put them back so the status filters see a live history.
        log(f"listing: restored {await restore_active_at(url)} seeded active runs")
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        results["idle_rss_mb"] = round(daemon.rss_mb(), 1)
        log(f"idle RSS with 10 tasks: {results['idle_rss_mb']} MB")
        results["listing"] = await listing.run(daemon.url, url, log)
        targets = {
            f"default page /api/tasks/{BIG_TASK}/runs": (f"/api/tasks/{BIG_TASK}/runs", 500),
            "default page /api/runs": ("/api/runs", None),
            f"HTTP floor {listing.FLOOR_PATH}": (listing.FLOOR_PATH, None),
        }
        results["throughput"] = {}
        for name, (path, target) in targets.items():
            # The default page's profile shows where a listing request's time goes.
            with recording(daemon.pid, "listing", profile and bool(target)) as profile_path:
                usage = Usage(daemon)
                measured = await asyncio.to_thread(load.measure, daemon.url + path)
                measured |= usage.result()
            if profile_path is not None:
                measured["profile"] = summarize(profile_path)
            if target:
                measured |= {"target_rps": target, "met": measured["rps"] >= target}
            results["throughput"][name] = measured
            log(f"throughput: {name}: {measured['rps']:,.0f} req/s ({measured['tool']})")
    finally:
        daemon.stop()


async def pages_phase(url: str, results: dict[str, Any]) -> None:
    """The dashboard's pages on a daemon serving the seeded tasks."""
    daemon = start_daemon("pages", pages.config(await pages.seeded_tasks(url)), url)
    try:
        # At start the daemon settles the seeded active runs (and runs the pending ones of
        # the tasks it now serves): let that finish so the pages are timed on a still history.
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        results["pages"] = (await pages.run(daemon.url, log))["pages"]
    finally:
        daemon.stop()
        log(f"pages: restored {await restore_active_at(url)} seeded active runs")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    url = await bench_database_url()
    results["machine"] = await _machine(url)
    # Seeding migrates a new database: only then are there tables to clean.
    results["seed"] = await ensure_seeded(url, args.runs, args.task_runs, args.fresh, log)
    await cleanup(url)
    try:
        if "listing" in args.only:
            await listing_phase(url, results, args.profile)
        if "pages" in args.only:
            await pages_phase(url, results)
        if "dispatch" in args.only:
            results["dispatch"] = one = await dispatch.triggers(url, log, args.profile)
            await cleanup(url)
            results["dispatch_2_nodes"] = await dispatch.triggers(
                url, log, args.profile, nodes=2, raw=one["baseline_spawn_per_s"]
            )
        if "cron" in args.only:
            results["cron"] = await dispatch.cron(url, log, args.profile)
        if "burst" in args.only:
            results["burst"] = await dispatch.burst(url, log, args.profile)
        if "output" in args.only:
            results["output"] = await output.capture(url, log, args.profile)
        if "logread" in args.only:
            results["logread"] = await logread.read_back(url, log, args.profile)
        if "failover" in args.only:
            results["failover"] = await failover.failover(url, log)
    finally:
        await cleanup(url)
    results["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; write results.json (and BENCHMARKS.md)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=2_000_000)
    parser.add_argument("--task-runs", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true", help="reseed even if already seeded")
    parser.add_argument(
        "--only", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    parser.add_argument(
        "--output", default=str(RESULTS), help="where to write the results (%(default)s)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy profiles into .runwarden/bench/profiles/"
    )
    parser.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md as it is")
    args = parser.parse_args(argv)
    args.only = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = args.only - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    results = asyncio.run(main_async(args))
    output_path = Path(args.output)
    output_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = report.render(results)
    print("\n" + text)
    print(f"wrote {output_path}")
    complete = args.only == set(PHASES)
    if complete and not args.no_markdown and report.update_markdown(BENCHMARKS_MD, text):
        print(f"updated {BENCHMARKS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
