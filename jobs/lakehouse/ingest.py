"""`lakehouse ingest`: new landing files → `events`, `quarantine` and `ingest_runs`, exactly once per file (each batch
planned first, its commits idempotent, so an interrupted batch is finished by the next run)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import state, tables
from lakehouse.config import Settings
from lakehouse.contract import Rules, classify
from lakehouse.dedup import first_copies, unseen
from lakehouse.gx_suites import Scope, check, import_gx_meanwhile, parameters, quarantine_share, record_validation
from lakehouse.landing import (
    changed,
    ingestible,
    list_landing,
    number_lines,
    read_guard,
    read_lines,
    screen,
    unsettled,
)
from lakehouse.records import IngestPlan, IngestRun, LandingFile
from lakehouse.session import spark_session
from lakehouse.state import INGEST
from lakehouse.storage import (
    append,
    append_records,
    delete_tree,
    local_files,
    peek_version,
    read,
    retry_on_conflict,
)

WRITER_ID = "lakehouse-ingest"
PLANNER_ID = "lakehouse-ingest-plan"
INDEXER_ID = "lakehouse-ingest-index"
# The batch number of ids indexed from `events` rather than by their batch.
INDEXED_FROM_EVENTS = 0
UNREADABLE = "unreadable_file"
# Where a batch's copies of landed files with over-long lines go (`landing.screen`), under the lake root.
STAGING = "_staging/ingest"
# Causes of a failed read that may pass (the storage was briefly unreachable): the batch fails and is retried by the
# next run, rather than setting the file aside.
TRANSIENT = (
    "SocketTimeoutException", "ConnectException", "SocketException", "ConnectTimeoutException", "UnknownHostException",
    "InterruptedIOException", "SdkClientException", "AWSClientIOException", "AWSServiceThrottledException",
    "AWSStatus500Exception", "Throttl", "SlowDown", "Status Code: 503", "Service Unavailable",
)  # fmt: skip
# What a run that found nothing to ingest reports.
_NOTHING = IngestRun(None, None, (), 0, 0, 0, 0, 0, {}, None, None, ())


class Next(NamedTuple):
    """A batch to run, and whether more may wait after it (further landing files or unfinished batches)."""

    batch: IngestPlan
    more: bool


def event_rows(classified: DataFrame, ingested_at: datetime) -> DataFrame:
    """The valid lines as `events` rows, with the partition columns; `line_number` kept for `first_copies`."""
    return classified.where(F.col("reason").isNull()).select(
        "event_id", "event_type", "event_ts",
        F.to_date("event_ts").alias("event_date"),
        F.hour("event_ts").alias("event_hour"),
        "user_id", "country", "service", "attributes", "meta", "source_file",
        F.lit(ingested_at).alias("ingested_at"),
        "line_number",
    )  # fmt: skip


def quarantine_rows(classified: DataFrame, ingested_at: datetime) -> DataFrame:
    """The rejected lines as `quarantine` rows."""
    return classified.where(F.col("reason").isNotNull()).select(
        "raw", "reason", "source_file", "line_number",
        F.lit(ingested_at).alias("ingested_at"),
        F.lit(ingested_at.date()).alias("ingest_date"),
    )  # fmt: skip


def ingest(settings: Settings) -> list[dict]:
    """Ingests every file not yet taken, finishing interrupted batches first; one summary per batch. Files landing
    while the last batch runs wait for the next run.

    Another run working at the same time makes Delta refuse a commit: the batch is then planned again, which
    picks up whatever the other run committed, so neither duplicates nor loses anything.
    """
    if _nothing_new(settings):
        return [_NOTHING.summary()]
    return list(batches(settings)) or [_NOTHING.summary()]


def _nothing_new(settings: Settings) -> bool:
    """Whether a look without a JVM finds nothing to ingest: every planned batch finished and, in a landing folder on
    the local disk, no file to ingest that no batch took. Otherwise (a landing folder on S3 or none at all, whose
    error the full look gives), Spark looks."""
    planned = state.planned_batches(settings)
    if {plan.batch for plan in planned} - state.finished_batches(settings):
        return False
    listed = local_files(tables.table_path(settings, tables.LANDING))
    if listed is None:
        return False
    taken, extensions = state.taken_files(settings, planned), settings.ingest.extensions
    return not any(ingestible(relative, extensions) and relative not in taken for relative in listed)


def batches(settings: Settings) -> Iterator[dict]:
    """`ingest`'s batches, each summary as its batch ends."""
    spark = spark_session(settings)
    more = True
    while more and (step := retry_on_conflict(lambda: _ingest_next(spark, settings))) is not None:
        summary, more = step
        yield summary


def watch(
    settings: Settings, interval: float, stopping: threading.Event, hold: Callable[[], AbstractContextManager]
) -> Iterator[dict | None]:
    """Ingests files as they land, in this process's one Spark session, until `stopping` is set (looked at between
    batches): each batch's summary as it ends, and None after a look at landing that found nothing. `hold` is held
    while a look's batches run (the lake's writer lock), and released between looks."""
    while not stopping.is_set():
        found = False
        with hold():
            for summary in batches(settings):
                found = True
                yield summary
                if stopping.is_set():
                    return
        if not found:
            yield None
        stopping.wait(interval)


def id_rows(events: DataFrame, batch: int) -> DataFrame:
    """The `_state/event_ids` rows of `events` rows: what dedup and forget-user need of them, and their batch."""
    return events.select("event_date", "event_id", "user_id", F.lit(batch).cast("long").alias("batch"))


def _ingest_next(spark: SparkSession, settings: Settings) -> tuple[dict, bool] | None:
    step = _next_batch(spark, settings)
    if step is None:
        return None
    # GX (for the batch's checks) loads while the batch runs; a run with nothing to ingest never loads it.
    import_gx_meanwhile()
    return _run(spark, settings, step.batch), step.more


def _next_batch(spark: SparkSession, settings: Settings) -> Next | None:
    planned = state.planned_batches(settings)
    finished = state.finished_batches(settings)
    pending = [b for b in planned if b.batch not in finished]
    if pending:
        return Next(pending[0], more=True)
    taken = state.taken_files(settings, planned)
    new = _settled(spark, settings, [f for f in _landed(spark, settings) if f.path not in taken])
    if not new:
        return None
    batch = IngestPlan(
        batch=max((b.batch for b in planned), default=0) + 1,
        run_id=str(uuid.uuid4()),
        started_at=datetime.now(UTC).replace(microsecond=0),
        events_version=peek_version(settings, tables.EVENTS),
        files=tuple(_fill(new, settings.ingest.max_batch_bytes, settings.ingest.max_batch_files)),
    )
    # `modified` came after the first plans: a lake planned before gets the field with this plan.
    append_records(spark, settings, tables.INGEST_BATCHES, [batch], txn=(PLANNER_ID, batch.batch), new_columns=True)
    # Another run may have planned this number first: its plan is the one that counts.
    counted = next(b for b in state.planned_batches(settings) if b.batch == batch.batch)
    return Next(counted, more=counted.files != batch.files or len(new) > len(batch.files))


def _landed(spark: SparkSession, settings: Settings) -> list[LandingFile]:
    return list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)


def _settled(spark: SparkSession, settings: Settings, files: list[LandingFile]) -> list[LandingFile]:
    """`files` but those a producer may still be writing: a file modified within the last `ingest.settle_seconds`
    is taken only if a second listing, that long after its change, finds it the same (size and time)."""
    settle_ms = settings.ingest.settle_seconds * 1000
    now_ms = int(time.time() * 1000)
    young = unsettled(files, now_ms, settle_ms)
    if not young:
        return files
    # A modification time in the future (a clock ahead of ours) waits the whole settle time, no longer.
    time.sleep(min(settle_ms, max(settle_ms - (now_ms - f.modified) for f in young)) / 1000)
    moved = {f.path for f in changed(young, _landed(spark, settings))}
    return [f for f in files if f.path not in moved]


def _fill(files: list[LandingFile], max_bytes: int, max_files: int) -> list[LandingFile]:
    """The first files that fit in `max_bytes` and `max_files` (always at least one)."""
    taken, total = [], 0
    for landed in files:
        if taken and (total + landed.size > max_bytes or len(taken) == max_files):
            break
        taken.append(landed)
        total += landed.size
    return taken


def _run(spark: SparkSession, settings: Settings, batch: IngestPlan) -> dict:
    started = time.monotonic()
    # A folder of this run's own: another run finishing the same batch meanwhile writes its copies elsewhere.
    staging = tables.table_path(settings, f"{STAGING}/batch-{batch.batch}-{uuid.uuid4()}")
    try:
        classified, set_aside, deferred = _read(spark, settings, batch, staging)
        try:
            summary = _commit(spark, settings, batch, classified, set_aside, deferred)
            return {**summary, "seconds": round(time.monotonic() - started, 3)}
        finally:
            classified.unpersist()
    finally:
        delete_tree(spark, staging)


def _read(
    spark: SparkSession, settings: Settings, batch: IngestPlan, staging: str
) -> tuple[DataFrame, dict[str, str], list[str]]:
    """The batch's lines, classified and read once (persisted); the files that cannot be read or expand beyond
    `ingest.max_file_expanded_bytes` (set aside: path and error), and those that changed since the batch was planned
    (deferred to a later batch, unread). Files with lines too long for Spark to hold are read as copies with those
    lines cut (`landing.screen`). A transient error fails the batch, which the next run retries."""
    rules = Rules.for_batch(settings.ingest, batch.started_at)
    limits = settings.ingest
    screened = screen(spark, list(batch.files), limits.max_line_bytes, limits.max_file_expanded_bytes, staging)
    set_aside, deferred = dict(screened.set_aside), []
    readable = [f for f in batch.files if f.path not in set_aside]
    while True:
        classified = None
        read_as = [screened.read_as.get(f.path, f) for f in readable]
        try:
            # A file gone before the read fails here already; one that cannot be read, at the count.
            lines = read_lines(spark, read_as, read_guard(limits.max_line_bytes))
            classified = classify(number_lines(lines), rules)
            classified.persist(StorageLevel.MEMORY_AND_DISK).count()
        except (Py4JJavaError, PySparkException) as exc:
            if classified is not None:
                classified.unpersist()
            culprit, error = _unreadable(exc, read_as)
            if culprit is None:
                raise
            set_aside[culprit.path] = error
            readable = [f for f in readable if f.path != culprit.path]
            continue
        moved = changed(readable, _landed(spark, settings))
        if not moved:
            return classified, set_aside, deferred
        classified.unpersist()
        deferred += [f.path for f in moved]
        readable = [f for f in readable if f not in moved]


def _unreadable(exc: Exception, files: list[LandingFile]) -> tuple[LandingFile | None, str]:
    """The file a failed read names, and the error's root cause, when the file itself cannot be read (corrupt or
    truncated gzip, deleted, refused); None for another failure or a transient one."""
    text = str(exc)
    if "FAILED_READ_FILE" not in text and "PATH_NOT_FOUND" not in text:
        return None, ""
    causes = re.findall(r"^Caused by: (.+)$", text, re.MULTILINE)
    cause = (causes[-1] if causes else text.strip().splitlines()[0]).strip()
    # Spark names the file as a URI of its own spelling (file:///… for file:/…): matched by its path.
    named = [f for f in files if urlparse(f.location).path in text]
    if not named or any(mark in text for mark in TRANSIENT):
        return None, ""
    return max(named, key=lambda f: len(urlparse(f.location).path)), cause[:1000]


def _commit(
    spark: SparkSession,
    settings: Settings,
    batch: IngestPlan,
    classified: DataFrame,
    set_aside: dict[str, str],
    deferred: list[str],
) -> dict:
    reasons = {row["reason"]: row["count"] for row in classified.groupBy("reason").count().collect()}
    if set_aside:
        reasons[UNREADABLE] = reasons.get(UNREADABLE, 0) + len(set_aside)
    rows = event_rows(classified, batch.started_at)
    dates = [row["event_date"] for row in rows.select("event_date").distinct().collect()]
    existing = _existing_ids(spark, settings, batch, dates)
    fresh = unseen(first_copies(rows), existing, settings.ingest.dedup_window_days)
    new = fresh.select(*tables.EVENT_COLUMNS).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        per_date = {row["event_date"]: row["count"] for row in new.groupBy("event_date").count().collect()}
        quarantine = quarantine_rows(classified, batch.started_at).unionByName(
            _set_aside_rows(spark, set_aside, batch.started_at)
        )
        _write_batch(settings, batch, new, quarantine)
        run = _run_record(batch, reasons, per_date, deferred)
        # `deferred` came after the first runs: a lake ingested before gets the column with this run.
        append_records(spark, settings, tables.INGEST_RUNS, [run], txn=(WRITER_ID, batch.batch), new_columns=True)
        noted = {"set_aside": set_aside} if set_aside else {}
        return run.summary() | noted | _checked(spark, settings, batch, run, new, quarantine)
    finally:
        new.unpersist()


def _set_aside_rows(spark: SparkSession, set_aside: dict[str, str], ingested_at: datetime) -> DataFrame:
    """One `quarantine` row per file that could not be read: the error as `raw`, no line number (the whole file)."""
    rows = [(error, UNREADABLE, path, None, ingested_at, ingested_at.date()) for path, error in set_aside.items()]
    return spark.createDataFrame(rows, tables.table(tables.QUARANTINE).schema)


def _run_record(
    batch: IngestPlan, reasons: dict[str | None, int], per_date: dict[date, int], deferred: list[str]
) -> IngestRun:
    lines_read, valid = sum(reasons.values()), sum(per_date.values())
    quarantined = sum(n for reason, n in reasons.items() if reason is not None)
    return IngestRun(
        run_id=batch.run_id,
        batch=batch.batch,
        files=tuple(f.path for f in batch.files),
        bytes=sum(f.size for f in batch.files),
        lines_read=lines_read,
        valid=valid,
        quarantined=quarantined,
        duplicates=lines_read - quarantined - valid,
        reasons={reason: n for reason, n in sorted(reasons.items(), key=str) if reason is not None},
        started_at=batch.started_at,
        finished_at=datetime.now(UTC),
        event_dates=tuple(sorted(per_date)),
        deferred=tuple(deferred),
    )


def _checked(
    spark: SparkSession, settings: Settings, batch: IngestPlan, run: IngestRun, events: DataFrame, quarantine: DataFrame
) -> dict:
    """The quality suites of `events` and `quarantine` over the batch's rows while they are in memory, once the batch
    is done, each recorded as checked by ingest; it gates nothing (`validate` does). A check that fails to run leaves
    `validate` to read the rows; an empty batch (blank files only) has nothing to check."""
    if not run.lines_read:
        return {"checks": {}, "check_seconds": 0.0}
    started = time.monotonic()
    share = F.lit(quarantine_share(run.quarantined, run.lines_read))
    rows = {tables.EVENTS: events, tables.QUARANTINE: quarantine.withColumn("_quarantine_share", share)}
    passed = {}
    for table, frame in rows.items():
        checked = check(settings, table, Scope(f"batch {batch.batch}", frame, parameters(settings, batch.started_at)))
        record_validation(spark, settings, checked, INGEST)
        passed[table] = "passed" if checked["success"] else "failed"
    return {"checks": passed, "check_seconds": round(time.monotonic() - started, 3)}


def _write_batch(settings: Settings, batch: IngestPlan, events: DataFrame, quarantine: DataFrame) -> None:
    """The batch's `events`, `quarantine` and `_state/event_ids` commits; `ingest_runs`, written last, marks the batch
    done."""
    txn = (WRITER_ID, batch.batch)
    append(events, settings, tables.EVENTS, txn)
    append(quarantine, settings, tables.QUARANTINE, txn)
    append(id_rows(events, batch.batch), settings, tables.EVENT_IDS, txn)


def _existing_ids(spark: SparkSession, settings: Settings, batch: IngestPlan, dates: list[date]) -> DataFrame:
    """The ids of the batches before `batch`, in the event dates it touches and `ingest.dedup_window_days` either side
    of them (the copies of a re-sent event lie within the window; reading only those partitions keeps dedup off a full
    scan)."""
    if not dates:
        return spark.createDataFrame([], "event_id string, event_date date")
    _index_events(spark, settings, batch)
    ids = read(spark, settings, tables.EVENT_IDS)
    if ids is None:
        return spark.createDataFrame([], "event_id string, event_date date")
    window = settings.ingest.dedup_window_days
    near = sorted({day + timedelta(days=shift) for day in dates for shift in range(-window, window + 1)})
    return ids.where(F.col("event_date").isin(near) & (F.col("batch") < batch.batch)).select("event_id", "event_date")


def _index_events(spark: SparkSession, settings: Settings, batch: IngestPlan) -> None:
    """Indexes the ids of `events` as `batch` was planned when the index does not exist yet but `events` does (a lake
    from before the index, or one written around ingest): once, a scan of `events`' `event_id`s."""
    if batch.events_version < 0 or peek_version(settings, tables.EVENT_IDS) >= 0:
        return
    events = read(spark, settings, tables.EVENTS, batch.events_version)
    append(id_rows(events, INDEXED_FROM_EVENTS), settings, tables.EVENT_IDS, (INDEXER_ID, 1))
