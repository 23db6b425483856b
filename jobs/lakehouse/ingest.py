"""`lakehouse ingest`: new landing files → `events`, `quarantine` and `ingest_runs`, exactly once per file.

Each batch is planned first (its files, start time and the `events` version it started from) in a small state table;
its commits carry Delta's idempotent-write ids (`txnAppId`/`txnVersion` = the batch number), so a batch interrupted
anywhere is finished by the next run, computing the same rows, and no commit lands twice.

Dedup reads the ids of earlier batches from `_state/event_ids` (event date, id, user, batch; a few files per date),
which each batch appends to with its `events` rows, rather than the `event_id` column of every `events` file of the
dates it touches (thousands of small files a day: one per type and hour and batch). Only batches numbered below the
one running count, so a batch finished after a crash ignores its own ids. A lake whose `events` predates the index
gets its ids indexed from `events` once, as batch 0; forget-user deletes a user's ids with their events.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.contract import Rules, classify
from lakehouse.dedup import first_copies, unseen
from lakehouse.landing import LandingFile, list_landing, number_lines, read_lines
from lakehouse.quality import check_batch, import_gx_meanwhile, quarantine_share
from lakehouse.session import spark_session
from lakehouse.storage import append, peek, peek_version, read, retry_on_conflict

WRITER_ID = "lakehouse-ingest"
PLANNER_ID = "lakehouse-ingest-plan"
INDEXER_ID = "lakehouse-ingest-index"
# The batch number of ids indexed from `events` rather than by their batch.
INDEXED_FROM_EVENTS = 0
EVENT_COLUMNS = (
    "event_id", "event_type", "event_ts", "event_date", "event_hour", "user_id", "country", "service",
    "attributes", "meta", "source_file", "ingested_at",
)  # fmt: skip
QUARANTINE_COLUMNS = ("raw", "reason", "source_file", "line_number", "ingested_at", "ingest_date")
BATCH_SCHEMA = (
    "batch long, run_id string, started_at timestamp, events_version long, "
    "files array<struct<path: string, location: string, uri: string, size: long>>"
)
RUN_SCHEMA = (
    "run_id string, batch long, files array<string>, bytes long, lines_read long, valid long, quarantined long, "
    "duplicates long, reasons map<string, long>, started_at timestamp, finished_at timestamp, "
    "event_dates array<date>"
)


class Next(NamedTuple):
    """A batch to run, and whether more may wait after it (further landing files or unfinished batches)."""

    batch: Batch
    more: bool


@dataclass(frozen=True)
class Batch:
    """A planned batch: the files it takes and everything its results depend on, fixed before any write."""

    batch: int
    run_id: str
    started_at: datetime
    events_version: int
    files: tuple[LandingFile, ...]


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
    spark = spark_session(settings)
    summaries = []
    more = True
    while more and (step := retry_on_conflict(lambda: _ingest_next(spark, settings))) is not None:
        summary, more = step
        summaries.append(summary)
    return summaries or [_empty_summary()]


def id_rows(events: DataFrame, batch: int) -> DataFrame:
    """The `_state/event_ids` rows of `events` rows: what dedup and forget-user need of them, and their batch."""
    return events.select("event_date", "event_id", "user_id", F.lit(batch).cast("long").alias("batch"))


def append_ids(ids: DataFrame, settings: Settings, txn: tuple[str, int] | None = None) -> None:
    """Appends `id_rows` to `_state/event_ids`: one file per date, sorted by user (forget-user skips by user)."""
    laid_out = ids.repartition("event_date").sortWithinPartitions("event_date", "user_id")
    append(laid_out, settings, tables.EVENT_IDS, ("event_date",), txn)


def clustered(events: DataFrame) -> DataFrame:
    """`events` laid out for writing: each partition's rows in one task, sorted by user, so each partition gets one
    file with its users in order (readers skip by user through Parquet's statistics)."""
    # Sorted by the partition columns first, as the writer needs, so its own sort cannot undo the user clustering.
    return events.repartition(*tables.EVENT_PARTITIONS).sortWithinPartitions(*tables.EVENT_PARTITIONS, "user_id")


def unfinished_batches(settings: Settings) -> list[int]:
    """The batches planned but not yet recorded in `ingest_runs`: running now, or interrupted and waiting for the next
    run to finish them from the landing files as they are then."""
    finished = _finished(settings)
    return [b.batch for b in _planned(settings) if b.batch not in finished]


def _ingest_next(spark: SparkSession, settings: Settings) -> tuple[dict, bool] | None:
    step = _next_batch(spark, settings)
    if step is None:
        return None
    # GX (for the batch's checks) loads while the batch runs; a run with nothing to ingest never loads it.
    import_gx_meanwhile()
    return _run(spark, settings, step.batch), step.more


def _next_batch(spark: SparkSession, settings: Settings) -> Next | None:
    planned = _planned(settings)
    finished = _finished(settings)
    pending = [b for b in planned if b.batch not in finished]
    if pending:
        return Next(pending[0], more=True)
    taken = {f.path for b in planned for f in b.files}
    landing = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
    new = [f for f in landing if f.path not in taken]
    if not new:
        return None
    batch = Batch(
        batch=max((b.batch for b in planned), default=0) + 1,
        run_id=str(uuid.uuid4()),
        started_at=datetime.now(UTC).replace(microsecond=0),
        events_version=peek_version(settings, tables.EVENTS),
        files=tuple(_fill(new, settings.ingest.max_batch_bytes)),
    )
    append(
        spark.createDataFrame([_batch_row(batch)], BATCH_SCHEMA),
        settings,
        tables.INGEST_BATCHES,
        txn=(PLANNER_ID, batch.batch),
    )
    # Another run may have planned this number first: its plan is the one that counts.
    counted = next(b for b in _planned(settings) if b.batch == batch.batch)
    return Next(counted, more=counted.files != batch.files or len(new) > len(batch.files))


def _fill(files: list[LandingFile], max_bytes: int) -> list[LandingFile]:
    """The first files that fit in `max_bytes` (always at least one)."""
    taken, total = [], 0
    for landed in files:
        if taken and total + landed.size > max_bytes:
            break
        taken.append(landed)
        total += landed.size
    return taken


def _run(spark: SparkSession, settings: Settings, batch: Batch) -> dict:
    started = time.monotonic()
    rules = Rules.for_batch(settings.ingest, batch.started_at)
    lines = number_lines(read_lines(spark, list(batch.files)))
    classified = classify(lines, rules).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return {**_commit(spark, settings, batch, classified), "seconds": round(time.monotonic() - started, 3)}
    finally:
        classified.unpersist()


def _commit(spark: SparkSession, settings: Settings, batch: Batch, classified: DataFrame) -> dict:
    reasons = {row["reason"]: row["count"] for row in classified.groupBy("reason").count().collect()}
    rows = event_rows(classified, batch.started_at)
    dates = [row["event_date"] for row in rows.select("event_date").distinct().collect()]
    existing = _existing_ids(spark, settings, batch, dates)
    new = unseen(first_copies(rows), existing).select(*EVENT_COLUMNS).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        per_date = {row["event_date"]: row["count"] for row in new.groupBy("event_date").count().collect()}
        quarantine = quarantine_rows(classified, batch.started_at)
        _write_batch(settings, batch, new, quarantine)
        summary = _summary(batch, reasons, per_date)
        run = spark.createDataFrame([_run_row(summary, batch)], RUN_SCHEMA)
        append(run, settings, tables.INGEST_RUNS, txn=(WRITER_ID, batch.batch))
        return _json_ready(summary | _checked(spark, settings, batch, summary, new, quarantine))
    finally:
        new.unpersist()


def _summary(batch: Batch, reasons: dict[str | None, int], per_date: dict[date, int]) -> dict:
    lines_read, valid = sum(reasons.values()), sum(per_date.values())
    quarantined = sum(n for reason, n in reasons.items() if reason is not None)
    return {
        "run_id": batch.run_id,
        "batch": batch.batch,
        "files": len(batch.files),
        "bytes": sum(f.size for f in batch.files),
        "lines_read": lines_read,
        "valid": valid,
        "quarantined": quarantined,
        "duplicates": lines_read - quarantined - valid,
        "reasons": {reason: n for reason, n in sorted(reasons.items(), key=str) if reason is not None},
        "event_dates": sorted(per_date),
        "started_at": batch.started_at,
        "finished_at": datetime.now(UTC),
    }


def _checked(
    spark: SparkSession, settings: Settings, batch: Batch, summary: dict, events: DataFrame, quarantine: DataFrame
) -> dict:
    """The quality suites over the batch's rows while they are in memory, once the batch is done (a check that fails
    to run leaves `validate` to read the rows); an empty batch (blank files only) has nothing to check."""
    if not summary["lines_read"]:
        return {"checks": {}, "check_seconds": 0.0}
    started = time.monotonic()
    share = F.lit(quarantine_share(summary["quarantined"], summary["lines_read"]))
    rows = {tables.EVENTS: events, tables.QUARANTINE: quarantine.withColumn("_quarantine_share", share)}
    passed = check_batch(spark, settings, batch.batch, batch.started_at, rows)
    return {
        "checks": {table: "passed" if ok else "failed" for table, ok in passed.items()},
        "check_seconds": round(time.monotonic() - started, 3),
    }


def _write_batch(settings: Settings, batch: Batch, events: DataFrame, quarantine: DataFrame) -> None:
    """The batch's `events`, `quarantine` and `_state/event_ids` commits; `ingest_runs`, written last, marks the batch
    done."""
    txn = (WRITER_ID, batch.batch)
    append(clustered(events), settings, tables.EVENTS, tables.EVENT_PARTITIONS, txn)
    append(quarantine.coalesce(1), settings, tables.QUARANTINE, tables.QUARANTINE_PARTITIONS, txn)
    append_ids(id_rows(events, batch.batch), settings, txn)


def _existing_ids(spark: SparkSession, settings: Settings, batch: Batch, dates: list[date]) -> DataFrame:
    """The ids of the batches before `batch`, in the event dates it touches (a re-sent event keeps its created_at,
    so its copies share a date; reading only those partitions keeps dedup off a full scan)."""
    if not dates:
        return spark.createDataFrame([], "event_id string")
    _index_events(spark, settings, batch)
    ids = read(spark, settings, tables.EVENT_IDS)
    if ids is None:
        return spark.createDataFrame([], "event_id string")
    return ids.where(F.col("event_date").isin(dates) & (F.col("batch") < batch.batch)).select("event_id")


def _index_events(spark: SparkSession, settings: Settings, batch: Batch) -> None:
    """Indexes the ids of `events` as `batch` was planned when the index does not exist yet but `events` does (a lake
    from before the index, or one written around ingest): once, a scan of `events`' `event_id`s."""
    if batch.events_version < 0 or peek_version(settings, tables.EVENT_IDS) >= 0:
        return
    events = read(spark, settings, tables.EVENTS, batch.events_version)
    append_ids(id_rows(events, INDEXED_FROM_EVENTS), settings, (INDEXER_ID, 1))


def _planned(settings: Settings) -> list[Batch]:
    plans = peek(settings, tables.INGEST_BATCHES, ["batch", "run_id", "started_at", "events_version", "files"]) or []
    batches: dict[int, Batch] = {}
    for row in sorted(plans, key=lambda plan: (plan["batch"], plan["started_at"])):
        started_at = row["started_at"].astimezone(UTC)
        files = tuple(LandingFile(f["path"], f["location"], f["uri"], f["size"]) for f in row["files"])
        batches.setdefault(row["batch"], Batch(row["batch"], row["run_id"], started_at, row["events_version"], files))
    return list(batches.values())


def _finished(settings: Settings) -> set[int]:
    return {row["batch"] for row in peek(settings, tables.INGEST_RUNS, ["batch"]) or []}


def _batch_row(batch: Batch) -> tuple:
    files = [(f.path, f.location, f.uri, f.size) for f in batch.files]
    return batch.batch, batch.run_id, batch.started_at, batch.events_version, files


def _run_row(summary: dict, batch: Batch) -> tuple:
    return (
        summary["run_id"], summary["batch"], [f.path for f in batch.files], summary["bytes"],
        summary["lines_read"], summary["valid"], summary["quarantined"], summary["duplicates"],
        summary["reasons"], summary["started_at"], summary["finished_at"], summary["event_dates"],
    )  # fmt: skip


def _json_ready(summary: dict) -> dict:
    return {k: _iso(v) if not isinstance(v, list) else [_iso(x) for x in v] for k, v in summary.items()}


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _empty_summary() -> dict:
    return {
        "run_id": None,
        "batch": None,
        "files": 0,
        "bytes": 0,
        "lines_read": 0,
        "valid": 0,
        "quarantined": 0,
        "duplicates": 0,
        "reasons": {},
        "event_dates": [],
    }
