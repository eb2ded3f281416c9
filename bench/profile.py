"""Sampling profiles of the daemon with py-spy (``python -m bench --profile``).

``py-spy record`` attaches to the daemon's pid for the length of a phase and writes the
collapsed stacks to ``.runwarden/bench/profiles/<phase>.txt`` (speedscope or
``flamegraph.pl``); :func:`summarize` keeps the heaviest frames for results.json. py-spy
samples wall-clock time of the running thread: on a busy machine time spent descheduled
lands on whatever frame was running, typically a socket ``write``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.env import ROOT, WORK

PROFILES = WORK / "profiles"
RATE = 250  # samples per second
_OURS = ("app/", "adapters/", "domain/")


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, name: str, enabled: bool) -> Iterator[Path | None]:
    """Record ``pid`` while the block runs; yields the output path (None if not recording)."""
    tool = _py_spy() if enabled else None
    if tool is None:
        yield None
        return
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / f"{name}.txt"
    proc = subprocess.Popen(
        [
            tool,
            "record",
            "-p",
            str(pid),
            "-r",
            str(RATE),
            "-f",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield out
    finally:
        # py-spy writes its output when interrupted.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def summarize(path: Path | None, top: int = 15) -> dict[str, Any] | None:
    """The heaviest frames of a collapsed-stack file: self time, and inclusive time of
    runwarden's own functions, as fractions of all samples."""
    if path is None or not path.exists():
        return None
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            if any(part in frame for part in _OURS):
                inclusive[frame] += samples
    if not total:
        return None
    return {
        "file": str(path.relative_to(ROOT)),
        "samples": total,
        "self": {f: round(n / total, 3) for f, n in own.most_common(top)},
        "inclusive_runwarden": {f: round(n / total, 3) for f, n in inclusive.most_common(top)},
    }
