"""The gold tables (DESIGN §4): their rows from `events` (pure transforms), and the rebuild of given days and their
months, one commit per table per pass, the run recorded last in `_state/aggregate_runs`."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.dates import month_days, months_of
from lakehouse.errors import LakehouseError
from lakehouse.records import AggregateRun
from lakehouse.storage import append_records, read, replace_partitions, rows_by_partition

USER_ACTIVITY_KEYS = ("event_date", "user_id", "event_type", "country")
STATS_KEYS = ("event_date", "event_type", "country")
MONTHLY_KEYS = ("event_month", "event_type", "country", "user_id")


def activity(events: DataFrame) -> DataFrame:
    """Events counted per (`event_date`, `user_id`, `event_type`, `country`), anonymous events (null `user_id`)
    included: both gold tables derive from this one pass over `events`."""
    return events.groupBy(*USER_ACTIVITY_KEYS).agg(
        F.count(F.lit(1)).alias("events"),
        F.min("event_ts").alias("first_seen"),
        F.max("event_ts").alias("last_seen"),
    )


def user_activity(activity_rows: DataFrame) -> DataFrame:
    """`daily_user_activity`: the rows of `activity` with a user."""
    return activity_rows.where(F.col("user_id").isNotNull()).select(
        *USER_ACTIVITY_KEYS, "events", "first_seen", "last_seen"
    )


def event_stats(activity_rows: DataFrame) -> DataFrame:
    """`daily_event_stats`: all events per (`event_date`, `event_type`, `country`), the distinct users among them
    (exact: `activity` has one row per user and key, so counting its non-null `user_id`s counts distinct users), and
    the events without a user (`anonymous_events`: what `bi.event_usage` adds to `daily_user_activity` without
    reading it a second time)."""
    return activity_rows.groupBy(*STATS_KEYS).agg(
        F.sum("events").alias("events"),
        F.count("user_id").alias("unique_users"),
        F.sum(F.when(F.col("user_id").isNull(), F.col("events")).otherwise(0)).alias("anonymous_events"),
    )


def monthly_activity(user_rows: DataFrame, stats_rows: DataFrame) -> DataFrame:
    """`monthly_user_activity`: `daily_user_activity` summed per (`event_month`, `event_type`, `country`,
    `user_id`), with the days the user had such events (`active_days`); plus, per month, type and country, one row
    with a NULL `user_id` holding the anonymous events of `daily_event_stats`. Over whole months it answers what
    `bi.event_usage` answers from days (events, and exact unique users: a user has one row per month and key) from
    fewer rows and far fewer files."""
    month = F.trunc("event_date", "month").cast("date").alias("event_month")
    users = user_rows.groupBy(month, "event_type", "country", "user_id").agg(
        F.sum("events").alias("events"), F.count(F.lit(1)).alias("active_days")
    )
    anonymous = (
        stats_rows.where(F.col("anonymous_events") > 0)
        .groupBy(month, "event_type", "country")
        .agg(F.sum("anonymous_events").alias("events"), F.count(F.lit(1)).alias("active_days"))
        .withColumn("user_id", F.lit(None).cast("string"))
    )
    return users.unionByName(anonymous).select(*MONTHLY_KEYS, "events", "active_days")


def passes(days: list[date], events_per_day: dict[date, int | None], max_events: int) -> list[list[date]]:
    """`days` (sorted) cut into consecutive runs of at most `max_events` events each; a day with more, or of unknown
    size (None), is a run of its own, and a day missing from `events_per_day` has none."""
    runs: list[list[date]] = []
    total = 0
    for day in days:
        events = events_per_day.get(day, 0)
        size = max_events if events is None else events
        if not runs or total + size > max_events:
            runs.append([])
            total = 0
        runs[-1].append(day)
        total += size
    return runs


def rebuild(spark: SparkSession, settings: Settings, days: list[date], batches: list[int]) -> dict:
    """Replaces `days` (sorted) in the daily gold tables and their months in the monthly rollup, then records the run
    as covering `batches`; the run's summary. A run that dies midway leaves `batches` uncovered, and rebuilding the
    same days again is harmless."""
    started_at, clock = datetime.now(UTC), time.monotonic()
    days = sorted({*days, *_without_anonymous_events(spark, settings)}) if days else days
    users, stats = _rebuild(spark, settings, days) if days else (0, 0)
    months = months_of([*days, *_months_missing(settings)]) if days else []
    monthly = _rebuild_months(spark, settings, months) if months else 0
    run = AggregateRun(str(uuid.uuid4()), started_at, datetime.now(UTC), tuple(days), tuple(batches), users, stats,
                       tuple(months))  # fmt: skip
    if days or batches:
        # `months` came after the first runs: a lake aggregated before gets the column with this run.
        append_records(spark, settings, tables.AGGREGATE_RUNS, [run], new_columns=True)
    return run.summary(monthly, round(time.monotonic() - clock, 3))


def _without_anonymous_events(spark: SparkSession, settings: Settings) -> list[date]:
    """Every day of a `daily_event_stats` written before it had `anonymous_events` (rebuilt once, with the days a run
    rebuilds anyway: `bi.event_usage` reads the column)."""
    stats = read(spark, settings, tables.DAILY_EVENT_STATS)
    if stats is None or "anonymous_events" in stats.columns:
        return []
    return [row["event_date"] for row in stats.select("event_date").distinct().collect()]


def _months_missing(settings: Settings) -> list[date]:
    """The months `daily_event_stats` has days of and `monthly_user_activity` lacks (all of them before the
    rollup's first build, for a lake aggregated by an older version): built with the months a run rebuilds anyway.
    Read from the two tables' logs, no Spark job."""
    built = set(rows_by_partition(settings, tables.MONTHLY_USER_ACTIVITY, "event_month"))
    return [month for month in months_of(rows_by_partition(settings, tables.DAILY_EVENT_STATS, "event_date"))
            if month not in built]  # fmt: skip


def _rebuild(spark: SparkSession, settings: Settings, days: list[date]) -> tuple[int, int]:
    """Replaces `days` in both gold tables, a pass of days at a time (`aggregate.max_events_per_pass`: months of
    history rebuilt at once need no more memory than one pass); the row counts written to each."""
    events = read(spark, settings, tables.EVENTS)
    if events is None:
        raise LakehouseError("no events table yet: run `lakehouse ingest` first")
    events_per_day = rows_by_partition(settings, tables.EVENTS, "event_date")
    written = [0, 0]
    for run in passes(days, events_per_day, settings.aggregate.max_events_per_pass):
        rows = activity(events.where(F.col("event_date").isin(run))).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            users, stats = user_activity(rows), event_stats(rows)
            replace_partitions(users, settings, tables.DAILY_USER_ACTIVITY, run)
            replace_partitions(stats, settings, tables.DAILY_EVENT_STATS, run, new_columns=True)
            written = [written[0] + users.count(), written[1] + stats.count()]
        finally:
            rows.unpersist()
    return written[0], written[1]


def _rebuild_months(spark: SparkSession, settings: Settings, months: list[date]) -> int:
    """Replaces `months` of `monthly_user_activity` from the daily gold tables as they are now, a pass of months at a
    time (at most `aggregate.max_events_per_pass` daily rows each); the rows written."""
    users, stats = read(spark, settings, tables.DAILY_USER_ACTIVITY), read(spark, settings, tables.DAILY_EVENT_STATS)
    if users is None or stats is None:
        raise LakehouseError("no daily aggregates to roll up into months")
    rows_per_day = rows_by_partition(settings, tables.DAILY_USER_ACTIVITY, "event_date")
    rows_per_month = {month: _total([rows_per_day.get(day, 0) for day in month_days(month)]) for month in months}
    written = 0
    for run in passes(months, rows_per_month, settings.aggregate.max_events_per_pass):
        days = [day for month in run for day in month_days(month)]
        rows = monthly_activity(*(table.where(F.col("event_date").isin(days)) for table in (users, stats)))
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            replace_partitions(rows, settings, tables.MONTHLY_USER_ACTIVITY, run)
            written += rows.count()
        finally:
            rows.unpersist()
    return written


def _total(counts: list[int | None]) -> int | None:
    """The sum of `counts`, None when one is unknown."""
    return None if None in counts else sum(counts)
