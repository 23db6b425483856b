"""`lakehouse aggregate`: the daily gold tables `daily_user_activity` and `daily_event_stats`, rebuilt from `events`
one whole day at a time, for exactly the days the ingest batches since the last run touched (or the days asked for);
then `monthly_user_activity`, their per-month rollup, rebuilt from them for the months of those days.

A day (a month) is rebuilt by replacing its partition in one commit, so re-running never double counts; many days are
rebuilt in passes of bounded size, one commit per gold table each. The batches a run covered are recorded last: a
run that dies midway leaves them pending and the next run rebuilds the same days and months.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.session import spark_session
from lakehouse.storage import append, peek, read, replace_days, retry_on_conflict, rows_by_partition

USER_ACTIVITY_KEYS = ("event_date", "user_id", "event_type", "country")
STATS_KEYS = ("event_date", "event_type", "country")
MONTHLY_KEYS = ("event_month", "event_type", "country", "user_id")
MAX_DAYS = 3_660
RUN_SCHEMA = (
    "run_id string, started_at timestamp, finished_at timestamp, days array<date>, batches array<long>, "
    "user_activity_rows long, event_stats_rows long, months array<date>"
)


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


def months_of(days: Iterable[date]) -> list[date]:
    """The first day of each month `days` fall in, sorted."""
    return sorted({day.replace(day=1) for day in days})


def month_days(month: date) -> list[date]:
    """Every day of the month starting on `month`."""
    following = (month + timedelta(days=32)).replace(day=1)
    return day_range(month, following - timedelta(days=1))


def day_range(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    if last < first:
        raise LakehouseError(f"--to {last} is before --from {first}")
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise LakehouseError(f"{count} days asked for; at most {MAX_DAYS} per run")
    return [first + timedelta(days=offset) for offset in range(count)]


def aggregate(settings: Settings, days: Iterable[date] | None = None) -> dict:
    """Rebuilds `days`, or with no days, every day the ingest batches not yet aggregated touched; returns a summary."""
    spark = spark_session(settings)
    return retry_on_conflict(lambda: _aggregate(spark, settings, days))


def _aggregate(spark: SparkSession, settings: Settings, asked: Iterable[date] | None) -> dict:
    started_at, clock = datetime.now(UTC), time.monotonic()
    batches, days = ([], sorted(set(asked))) if asked is not None else _pending(spark, settings)
    days = sorted({*days, *_without_anonymous_events(spark, settings)}) if days else days
    users, stats = _rebuild(spark, settings, days) if days else (0, 0)
    months = months_of([*days, *_months_missing(settings)]) if days else []
    monthly = _rebuild_months(spark, settings, months) if months else 0
    run_id = str(uuid.uuid4())
    if days or batches:
        row = (run_id, started_at, datetime.now(UTC), days, batches, users, stats, months)
        # `months` came after the first runs: a lake aggregated before gets the column with this run.
        append(spark.createDataFrame([row], RUN_SCHEMA), settings, tables.AGGREGATE_RUNS, new_columns=True)
    return {
        "run_id": run_id,
        "days": [day.isoformat() for day in days],
        "batches": batches,
        "user_activity_rows": users,
        "event_stats_rows": stats,
        "months": [month.isoformat()[:7] for month in months],
        "monthly_activity_rows": monthly,
        "seconds": round(time.monotonic() - clock, 3),
    }


def unaggregated_batches(settings: Settings) -> list[int]:
    """The ingest batches no run has aggregated yet, read without Spark: what tells the DAGs that new data exists."""
    ingested = peek(settings, tables.INGEST_RUNS, ["batch"]) or []
    covered = {batch for run in peek(settings, tables.AGGREGATE_RUNS, ["batches"]) or [] for batch in run["batches"]}
    return sorted(row["batch"] for row in ingested if row["batch"] not in covered)


def _pending(spark: SparkSession, settings: Settings) -> tuple[list[int], list[date]]:
    """The ingest batches no run has aggregated yet, and the event dates they touched."""
    runs = read(spark, settings, tables.INGEST_RUNS)
    if runs is None:
        return [], []
    done = read(spark, settings, tables.AGGREGATE_RUNS)
    if done is not None:
        runs = runs.join(done.select(F.explode("batches").alias("batch")), "batch", "left_anti")
    pending = runs.select("batch", "event_dates").collect()
    days = {day for row in pending for day in row["event_dates"]}
    return sorted(row["batch"] for row in pending), sorted(days)


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
            replace_days(_clustered(users), settings, tables.DAILY_USER_ACTIVITY, run)
            replace_days(_clustered(stats), settings, tables.DAILY_EVENT_STATS, run, new_columns=True)
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
            replace_days(_clustered(rows), settings, tables.MONTHLY_USER_ACTIVITY, run, column="event_month")
            written += rows.count()
        finally:
            rows.unpersist()
    return written


def _total(counts: list[int | None]) -> int | None:
    """The sum of `counts`, None when one is unknown."""
    return None if None in counts else sum(counts)


def _clustered(frame: DataFrame) -> DataFrame:
    """Rows laid out by day (or month), type and country (ranges, not hashes) so each file covers a narrow slice of
    the keys BI queries filter on, and readers skip files by their min/max statistics."""
    order = ("event_date", "event_month", "event_type", "country", "user_id")
    keys = [column for column in order if column in frame.columns]
    return frame.repartitionByRange(*keys).sortWithinPartitions(*keys)
