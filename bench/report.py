"""The results as Markdown tables: printed by ``make bench`` and kept in BENCHMARKS.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _cpu(figures: dict[str, Any]) -> str:
    value = figures.get("daemon_cpu_pct")
    return "—" if value is None else f"{value:.0f}% of a core"


def _met(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "**no**")


def listing_table(listing: dict[str, Any]) -> list[str]:
    floor = listing["floor"]
    lines = [
        f"HTTP floor (`GET /schemas/Run.json`, no database): p50 {_ms(floor['p50_ms'])} ms,"
        f" p99 {_ms(floor['p99_ms'])} ms. SQL = the statement the adapter sends (the page with"
        " its total) through asyncpg, same parameters.",
        "",
        "| listing | query | total | p50 ms | p99 ms | SQL p50 | SQL p99 | target p99 | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for q in listing["queries"]:
        scope = "task `big`" if q["scope"] == "task" else "`/api/runs`"
        lines.append(
            f"| {scope} | {q['query']} | {q['total']:,} | {_ms(q['p50_ms'])} | {_ms(q['p99_ms'])}"
            f" | {_ms(q['baseline_sql_p50_ms'])} | {_ms(q['baseline_sql_p99_ms'])}"
            f" | {_ms(q['target_p99_ms'])} | {_met(q['met'])} |"
        )
    return lines


def burst_lines(b: dict[str, Any]) -> list[str]:
    """1,000 tasks due the same second: when their processes began, against raw spawn."""
    shown = "; ".join(
        f"{x['processes']:,} processes, p50 {_ms(x['p50_process_ms'])} ms, last"
        f" {_ms(x['last_process_ms'])} ms (last recorded start_at {_ms(x['last_start_ms'])} ms)"
        for x in b["bursts"]
    )
    return [
        f"Burst: {b['tasks']:,} tasks due the same second, {len(b['bursts'])} bursts: {shown}."
        f" Raw spawn of {b['tasks']:,} `true` at once {_ms(b['baseline_spawn_ms'])} ms (the"
        f" tasks' command through `sh`: {_ms(b.get('baseline_shell_spawn_ms'))} ms): the last"
        f" process began at **{b['ratio']:.2f}x** raw spawn (target ≤ {b['target_ratio']:g}x:"
        f" {_met(b['met'])}); every tick recorded: {_met(b['complete'])}."
        f" Daemon CPU {_cpu(b)}, machine {b.get('machine_busy_pct', '—')}% busy.",
        "",
    ]


def logread_table(r: dict[str, Any]) -> list[str]:
    """Reading a 200 MB log back: raw download and SSE replay, with the storage floor."""
    raw, stream = r["raw"], r["stream"]
    return [
        "### Reading a log back",
        "",
        f"A log of {r['text_bytes'] / 1e6:,.0f} MB of random base64 in {r['lines']:,} lines.",
        "",
        "| what | figure | target |",
        "|---|---:|---|",
        f"| floor: the chunks read by asyncpg, written to a socket |"
        f" {r['baseline_read_mb_per_s']:,.1f} MB/s | |",
        f"| `GET …/log/raw` | {raw['mb_per_s']:,.1f} MB/s ({r['raw_ratio']:.0%} of the floor)"
        f" | ≥ 50%: {_met(r['raw_met'])} |",
        f"| SSE `…/log/stream` from line 0 | {stream['lines_per_s']:,.0f} lines/s"
        f" | ≥ 300,000: {_met(r['stream_met'])} |",
        f"| daemon peak RSS: idle / raw / SSE | {r['rss_idle_mb']:.0f} /"
        f" {raw['rss_peak_mb']:.0f} / {stream['rss_peak_mb']:.0f} MB | bounded |",
        f"| daemon CPU: raw / SSE (of one core) | {_cpu(raw)} / {_cpu(stream)} | |",
        "",
    ]


def render(results: dict[str, Any]) -> str:
    """Every section present in ``results`` as Markdown."""
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"Run {results['started_at']} on {m['cpus']} CPUs ({m['cpu_model']}), "
        f"{m['memory_gb']} GB RAM, {m['postgres']}, Python {m['python']}; "
        f"load average {m['load_before']} before, {m['load_after']} after; "
        f"{results['seconds']:.0f} s in all."
    )
    seed = results.get("seed")
    if seed:
        how = "reused" if seed["reused"] else f"loaded in {seed['seconds']['total']:.0f} s"
        out.append(f"History: {seed['runs']:,} runs, {seed['task_runs']:,} in `big` ({how}).")
    out.append("")
    if "listing" in results:
        out += ["### Listing", "", *listing_table(results["listing"]), ""]
    if "pages" in results:
        out += [
            "### Dashboard pages (server time, keep-alive loopback)",
            "",
            "| page | path | bytes | p50 ms | p99 ms | target p99 | met |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for p in results["pages"]:
            out.append(
                f"| {p['page']} | `{p['path']}` | {p['bytes']:,} | {_ms(p['p50_ms'])}"
                f" | {_ms(p['p99_ms'])} | {_ms(p['target_p99_ms'])} | {_met(p['met'])} |"
            )
        out.append("")
    if "throughput" in results:
        out += ["### Throughput (16 connections, separate process)", ""]
        out += [
            "| endpoint | tool | req/s | target | daemon CPU | machine busy |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, t in results["throughput"].items():
            target = t.get("target_rps")
            out.append(
                f"| {name} | {t['tool']} | {t['rps']:,.0f} | {target or ''}"
                f" | {_cpu(t)} | {t.get('machine_busy_pct', '—')}% |"
            )
        out.append("")
    if "dispatch" in results:
        d = results["dispatch"]
        out += [
            "### Dispatch",
            "",
            f"{d['triggers']:,} API triggers of `true` (max_concurrent {d['max_concurrent']},"
            f" {d['clients']} clients): **{d['runs_per_s']:,.0f} runs/s** recorded success"
            f" vs raw `asyncio.create_subprocess_exec('true')` {d['baseline_spawn_per_s']:,.0f}/s"
            f" = {d['ratio']:.0%} (target ≥ 50%: {_met(d['met'])}). Daemon CPU {_cpu(d)},"
            f" machine {d.get('machine_busy_pct', '—')}% busy.",
            "",
        ]
        two = results.get("dispatch_2_nodes")
        if two:
            out += [
                f"The same on **2 nodes** of one database (clients spread over both APIs,"
                f" max_concurrent {two['max_concurrent']} cluster-wide): **{two['runs_per_s']:,.0f}"
                f" runs/s** in all ({two['ratio']:.0%} of raw spawn; {d['runs_per_s']:,.0f} on 1"
                f" node in this run); runs per node {', '.join(map(str, two['runs_per_node']))};"
                f" daemons' CPU {_cpu(two)} together, machine {two.get('machine_busy_pct', '—')}%"
                " busy.",
                "",
            ]
    if "cron" in results:
        c = results["cron"]
        out += [
            f"Cron: {c['tasks']} tasks due every second for {c['ticks']} s: {c['started']:,} of"
            f" {c['expected_runs']:,} ticks started; tick → start_at p50 {_ms(c['p50_ms'])} ms,"
            f" p99 {_ms(c['p99_ms'])} ms, max {_ms(c['max_ms'])} ms"
            f" (target p99 ≤ 100 ms: {_met(c['met'])}); slowest start of each tick"
            f" {', '.join(_ms(m) for m in c.get('max_ms_per_tick', []))} ms."
            f" Outcomes {c['outcomes']};"
            f" daemon CPU {_cpu(c)}, machine {c.get('machine_busy_pct', '—')}% busy.",
            "",
        ]
    if "burst" in results:
        out += burst_lines(results["burst"])
    if "output" in results:
        o = results["output"]
        out += [
            "### Output",
            "",
            "| what | figure | target |",
            "|---|---:|---|",
            f"| 200 MB captured and stored | {o['mb_per_s']:,.1f} MB/s | |",
            f"| floor: pipe to /dev/null | {o['baseline_pipe_mb_per_s']:,.1f} MB/s | |",
            f"| floor: asyncpg COPY, 64 KiB chunks | {o['baseline_storage_mb_per_s']:,.1f} MB/s"
            " | |",
            f"| captured / storage floor | {o['ratio_to_storage']:.0%} | ≥ 50%: {_met(o['met'])} |",
            f"| daemon peak RSS while capturing | {o['rss_peak_mb']:,.0f} MB |"
            f" ≤ 150 MB: {_met(o['rss_met'])} |",
            f"| daemon CPU while capturing (of one core) | {_cpu(o)} | |",
        ]
        for name, page in o["log_pages"].items():
            out.append(
                f"| page of 1,000 lines at the {name} (line {page['from']:,}), p50 / p99 |"
                f" {_ms(page['p50_ms'])} / {_ms(page['p99_ms'])} ms"
                f" | ≤ 20 ms: {_met(page['met'])} |"
            )
        out.append("")
    if "logread" in results:
        out += logread_table(results["logread"])
    if "failover" in results:
        f = results["failover"]
        crashed, back = f["crashed"], f["instances_back"]
        out += [
            "### Cluster failover",
            "",
            f"{f['kills']} hard kills of one node of 2 (daemon and its process groups),"
            f" lease {f['lease_s']:g} s, heartbeat {f['heartbeat_s']:g} s; from a `SELECT now()`"
            " just before each kill:",
            "",
            "| what | p50 | max | target | met |",
            "|---|---:|---:|---:|---|",
            f"| victim's runs recorded `crashed` | {crashed['p50_s']:.2f} s"
            f" | {crashed['max_s']:.2f} s | ≤ {crashed['target_s']:g} s | {_met(crashed['met'])} |",
            f"| service back at 2 instances on the survivor | {back['p50_s']:.2f} s"
            f" | {back['max_s']:.2f} s | ≤ {back['target_s']:g} s | {_met(back['met'])} |",
            "",
        ]
    if "idle_rss_mb" in results:
        out.append(
            f"Idle RSS with 10 tasks configured: **{results['idle_rss_mb']:.0f} MB** (aim ≤ 80 MB)."
        )
    return "\n".join(out).rstrip() + "\n"


def update_markdown(path: Path, text: str) -> bool:
    """Replace the results section of ``path`` between the markers; False if it has none."""
    if not path.exists():
        return False
    content = path.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(content):
        return False
    path.write_text(pattern.sub(lambda _: f"{START}\n{text}{END}", content))
    return True
