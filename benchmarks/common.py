"""Helpers the benchmarks share: the machine they ran on, how they print a spread of timings, cheap file copies."""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path


def memory_gib() -> float:
    """The machine's total memory in GiB."""
    with open("/proc/meminfo") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return kib / 1024**2


def machine() -> str:
    """Cores, memory and the 1-minute load average, for a benchmark's first line."""
    return f"machine: {os.cpu_count() or 1} cores, {memory_gib():.1f} GiB, load {os.getloadavg()[0]:.1f}"


def spread(values: list[float]) -> str:
    """The median, with min–max when there is more than one value."""
    median = f"{statistics.median(values):.1f}"
    return median if len(values) == 1 else f"{median} ({min(values):.1f}–{max(values):.1f})"


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-links `source` to `target` (a copy where links are not possible): the lake only ever adds files."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
