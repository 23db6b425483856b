"""`lakehouse aggregate`: rebuilds the gold tables for exactly the days the ingest batches since the last run touched
(or the days asked for), and records which batches the run covered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from lakehouse import gold, state
from lakehouse.config import Settings
from lakehouse.session import spark_session
from lakehouse.storage import retry_on_conflict


def aggregate(settings: Settings, days: Iterable[date] | None = None) -> dict:
    """Rebuilds `days`, or with no days, every day the ingest batches not yet aggregated touched; returns a summary."""
    spark = spark_session(settings)
    asked = None if days is None else sorted(set(days))

    def once() -> dict:
        batches, rebuilt = ([], asked) if asked is not None else state.pending_days(settings)
        return gold.rebuild(spark, settings, rebuilt, batches)

    return retry_on_conflict(once)
