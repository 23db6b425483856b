"""Where each table lives under the lake root, and the schemas of the tables the pipeline writes."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

EVENTS = "events"
QUARANTINE = "quarantine"
INGEST_RUNS = "ingest_runs"
DAILY_USER_ACTIVITY = "daily_user_activity"
DAILY_EVENT_STATS = "daily_event_stats"
MONTHLY_USER_ACTIVITY = "monthly_user_activity"
# The gold tables, in the order they are written: what `aggregate` builds, the gates validate and analysts may read.
GOLD = (DAILY_USER_ACTIVITY, DAILY_EVENT_STATS, MONTHLY_USER_ACTIVITY)
INGEST_BATCHES = "_state/ingest_batches"
EVENT_IDS = "_state/event_ids"
AGGREGATE_RUNS = "_state/aggregate_runs"
FORGET_REQUESTS = "_state/forget_requests"
QUALITY = "_quality"
VALIDATIONS = "_quality/validations"
LANDING = "landing"

EVENT_PARTITIONS = ("event_type", "event_date", "event_hour")
QUARANTINE_PARTITIONS = ("ingest_date",)


def lake_root(settings: Settings) -> str:
    """The lake root as a URI Spark and Hadoop accept: remote schemes as given, local paths made absolute."""
    root = settings.lake.root.rstrip("/")
    if urlparse(root).scheme in ("", "file"):
        return "file://" + os.path.abspath(root.removeprefix("file://"))
    return root


def table_path(settings: Settings, name: str) -> str:
    """The location of table (or folder) `name` under the lake root."""
    return f"{lake_root(settings)}/{name}"


def local_path(settings: Settings, name: str, needed_by: str) -> Path:
    """Table or folder `name` as a local path, for work on its files that only a local lake allows so far; a remote
    lake is refused with one line saying what `needed_by` it."""
    root = lake_root(settings)
    if urlparse(root).scheme != "file":
        raise LakehouseError(f"{needed_by} on a local lake only, not {root}")
    return Path(urlparse(table_path(settings, name)).path)
