"""The catalogue of the lake's tables: one record per table (its path under the lake root, partitions, file layout,
schema and roles), from which every list of tables is derived."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.records import AggregateRun, ForgetPlan, ForgetRequest, IngestPlan, IngestRun, Validation

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

EVENTS = "events"
QUARANTINE = "quarantine"
INGEST_RUNS = "ingest_runs"
DAILY_USER_ACTIVITY = "daily_user_activity"
DAILY_EVENT_STATS = "daily_event_stats"
MONTHLY_USER_ACTIVITY = "monthly_user_activity"
INGEST_BATCHES = "_state/ingest_batches"
EVENT_IDS = "_state/event_ids"
AGGREGATE_RUNS = "_state/aggregate_runs"
FORGET_REQUESTS = "_state/forget_requests"
FORGET_PLANS = "_state/forget_plans"
VALIDATIONS = "_quality/validations"
# Folders under the lake root that are no Delta table.
LANDING = "landing"
QUALITY = "_quality"


@dataclass(frozen=True)
class Layout:
    """How a table's rows are laid out in files as they are written: `spread` one of "as_written", "one_file",
    "partition" (each partition's rows in one task: one file per partition) or "range" (ranges of `sort`, so each file
    covers a narrow slice of the keys and readers skip files by their min/max statistics); each file sorted by the
    partition columns, then `sort`."""

    spread: str = "as_written"
    sort: tuple[str, ...] = ()

    def apply(self, frame: DataFrame, partitions: tuple[str, ...]) -> DataFrame:
        """`frame` laid out for writing into a table partitioned by `partitions`."""
        # Sorted by the partition columns first, as the writer needs, so its own sort cannot undo the order.
        order = [*partitions, *(column for column in self.sort if column not in partitions)]
        if self.spread == "one_file":
            return frame.coalesce(1)
        if self.spread == "partition":
            return frame.repartition(*partitions).sortWithinPartitions(*order)
        if self.spread == "range":
            return frame.repartitionByRange(*order).sortWithinPartitions(*order)
        return frame


@dataclass(frozen=True)
class Table:
    """One Delta table of the lake and what it is.

    `published`: registered in Trino's schema `lake`; `gold`: built by `aggregate` and gated after it; `analyst`:
    readable by Trino's `analyst` user; `suite`: has a GX suite `expectations/<name>.json`; `purged`: forget-user
    deletes a user's rows from it and purges its old files; `maintained`: compacted and vacuumed by `maintain`;
    `reclustered`: compacted by rewriting its crowded partitions as it is written (keeping each file's sort) rather
    than by OPTIMIZE."""

    name: str
    schema: str
    partitions: tuple[str, ...] = ()
    layout: Layout = Layout()
    published: bool = False
    gold: bool = False
    analyst: bool = False
    suite: bool = False
    purged: bool = False
    maintained: bool = True
    reclustered: bool = False


_BY_USER = Layout("partition", ("user_id",))
CATALOGUE: tuple[Table, ...] = (
    Table(
        EVENTS,
        "event_id string, event_type string, event_ts timestamp, event_date date, event_hour int, user_id string, "
        "country string, service string, attributes string, meta string, source_file string, ingested_at timestamp",
        ("event_type", "event_date", "event_hour"), _BY_USER, published=True, suite=True, purged=True,
        reclustered=True,
    ),
    Table(
        QUARANTINE,
        "raw string, reason string, source_file string, line_number long, ingested_at timestamp, ingest_date date",
        ("ingest_date",), Layout("one_file"), published=True, suite=True, purged=True,
    ),
    Table(INGEST_RUNS, IngestRun.schema(), published=True),
    Table(
        DAILY_USER_ACTIVITY,
        "event_date date, user_id string, event_type string, country string, events long, first_seen timestamp, "
        "last_seen timestamp",
        ("event_date",), Layout("range", ("event_type", "country", "user_id")),
        published=True, gold=True, analyst=True, suite=True, purged=True,
    ),
    Table(
        DAILY_EVENT_STATS,
        "event_date date, event_type string, country string, events long, unique_users long, anonymous_events long",
        ("event_date",), Layout("range", ("event_type", "country")),
        published=True, gold=True, analyst=True, suite=True, purged=True,
    ),
    Table(
        MONTHLY_USER_ACTIVITY,
        "event_month date, event_type string, country string, user_id string, events long, active_days long",
        ("event_month",), Layout("range", ("event_type", "country", "user_id")),
        published=True, gold=True, analyst=True, suite=True, purged=True,
    ),
    Table(INGEST_BATCHES, IngestPlan.schema()),
    Table(EVENT_IDS, "event_date date, event_id string, user_id string, batch long", ("event_date",), _BY_USER,
          purged=True),
    Table(AGGREGATE_RUNS, AggregateRun.schema()),
    Table(VALIDATIONS, Validation.schema()),
    Table(FORGET_REQUESTS, ForgetRequest.schema()),
    # Holds a user id while their request is under way: forget-user deletes and purges its row as the request ends.
    Table(FORGET_PLANS, ForgetPlan.schema()),
)  # fmt: skip
_BY_NAME = {table.name: table for table in CATALOGUE}

# The lists of tables, in catalogue order: the gold tables in the order `aggregate` writes them.
GOLD = tuple(table.name for table in CATALOGUE if table.gold)
PUBLISHED = tuple(table.name for table in CATALOGUE if table.published)
ANALYST_TABLES = tuple(table.name for table in CATALOGUE if table.analyst)
WITH_SUITE = tuple(table.name for table in CATALOGUE if table.suite)
PURGED = tuple(table.name for table in CATALOGUE if table.purged)
MAINTAINED = tuple(table.name for table in CATALOGUE if table.maintained)
EVENT_COLUMNS = tuple(column.split()[0] for column in _BY_NAME[EVENTS].schema.split(", "))


def table(name: str) -> Table:
    """The catalogue's record of table `name`."""
    return _BY_NAME[name]


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
