"""`lakehouse run`: the whole pipeline end to end on the configured lake, with sample data when landing is empty."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import generate
from lakehouse.ingest import ingest

SAMPLE_EVENTS = 200_000
SAMPLE_DAYS = 7
# Few types keep the demo's partitions (type x day x hour) few: each partition is at least one file per batch.
SAMPLE_TYPES = 40


def run(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Generates sample data if the landing zone is empty, then ingests; one progress line per stage."""
    landing = _local_landing(settings)
    if not any(p.is_file() for p in landing.rglob("*")):
        start = datetime.now(UTC).date() - timedelta(days=SAMPLE_DAYS)
        made = generate(landing / "sample", SAMPLE_EVENTS, days=SAMPLE_DAYS, start=start, users=5_000,
                        types=SAMPLE_TYPES, bad_rate=0.01, dup_rate=0.02, seed=1)  # fmt: skip
        say(f"generate: {made.lines} sample events in {len(made.files)} files under {landing / 'sample'}")
    for summary in ingest(settings):
        say(f"ingest: {json.dumps(summary)}")


def _local_landing(settings: Settings) -> Path:
    landing = tables.local_path(settings, tables.LANDING, "`lakehouse run` makes sample data")
    landing.mkdir(parents=True, exist_ok=True)
    return landing
