"""The pipeline's own state, read back: planned, finished and unfinished ingest batches, the batches and days waiting
for the aggregates, the runs a validation covers, the latest validations and forget requests."""

from __future__ import annotations

from datetime import UTC, date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.records import IngestPlan, LandingFile
from lakehouse.storage import peek, read

# Checked by ingest itself (per batch) or by `lakehouse validate`: `checked_by` of a validation.
INGEST, VALIDATE = "ingest", "validate"
# What a validation needs of each ingest run it covers.
RUN_COLUMNS = ["batch", "started_at", "event_dates", "quarantined", "lines_read"]


def planned_batches(settings: Settings) -> list[IngestPlan]:
    """Every planned ingest batch, by number; of two plans of one number (two runs at once), the first."""
    plans = peek(settings, tables.INGEST_BATCHES, ["batch", "run_id", "started_at", "events_version", "files"]) or []
    batches: dict[int, IngestPlan] = {}
    for row in sorted(plans, key=lambda plan: (plan["batch"], plan["started_at"])):
        files = tuple(
            LandingFile(f["path"], f["location"], f["uri"], f["size"], f.get("modified")) for f in row["files"]
        )
        plan = IngestPlan(row["batch"], row["run_id"], row["started_at"].astimezone(UTC), row["events_version"], files)
        batches.setdefault(row["batch"], plan)
    return list(batches.values())


def finished_batches(settings: Settings) -> set[int]:
    """The ingest batches recorded in `ingest_runs`: done."""
    return {row["batch"] for row in peek(settings, tables.INGEST_RUNS, ["batch"]) or []}


def taken_files(settings: Settings, planned: list[IngestPlan]) -> set[str]:
    """The landing paths `planned` batches took: those of every plan, but for a file the finished batch that planned
    it last deferred (it changed after planning: a later batch takes it as it is then)."""
    runs = peek(settings, tables.INGEST_RUNS, None) or []
    deferred = {run["batch"]: set(run.get("deferred") or ()) for run in runs}
    last = {f.path: plan.batch for plan in planned for f in plan.files}
    return {path for path, batch in last.items() if path not in deferred.get(batch, set())}


def unfinished_batches(settings: Settings) -> list[int]:
    """The batches planned but not yet recorded in `ingest_runs`: running now, or interrupted and waiting for the next
    run to finish them from the landing files as they are then."""
    finished = finished_batches(settings)
    return [plan.batch for plan in planned_batches(settings) if plan.batch not in finished]


def unaggregated_batches(settings: Settings) -> list[int]:
    """The ingest batches no aggregate run has covered yet, read without Spark: what tells the DAGs that new data
    exists."""
    return [run["batch"] for run in _unaggregated_runs(settings, ["batch"])]


def pending_days(settings: Settings) -> tuple[list[int], list[date]]:
    """The ingest batches no aggregate run has covered yet, and the event dates they touched."""
    runs = _unaggregated_runs(settings, ["batch", "event_dates"])
    return [run["batch"] for run in runs], sorted({day for run in runs for day in run["event_dates"]})


def ingest_runs(settings: Settings) -> list[dict]:
    """Every `ingest_runs` row (RUN_COLUMNS), by batch."""
    return sorted(peek(settings, tables.INGEST_RUNS, RUN_COLUMNS) or [], key=lambda run: run["batch"])


def runs_to_validate(settings: Settings) -> list[dict]:
    """The `ingest_runs` rows (RUN_COLUMNS) a validation without a day covers: every batch still waiting for the
    aggregates (a backlog is ingested as several), else the latest one; none before the first."""
    runs = ingest_runs(settings)
    waiting = set(unaggregated_batches(settings))
    return [run for run in runs if run["batch"] in waiting] or runs[-1:]


def last_aggregate_run(settings: Settings) -> dict | None:
    """The latest aggregate run that rebuilt any day (`run_id`, `days`, and `months` when the run recorded them)."""
    runs = [run for run in peek(settings, tables.AGGREGATE_RUNS, None) or [] if run["days"]]
    return max(runs, key=lambda run: run["finished_at"], default=None)


def validations(settings: Settings) -> list[dict]:
    """Every recorded validation, oldest first (empty before the first)."""
    return sorted(peek(settings, tables.VALIDATIONS, None) or [], key=lambda record: record["validated_at"])


def failed_tables(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Each table whose latest validation failed, or whose rows failed ingest's own check since, with what failed
    (a later batch passing says nothing of an earlier one)."""
    recorded = read(spark, settings, tables.VALIDATIONS)
    if recorded is None:
        return {}
    by = F.col("checked_by") if "checked_by" in recorded.columns else F.lit(None).cast("string")
    picked = recorded.select("table_name", "scope", "success", "failed", by.alias("by"), "validated_at")
    failed: dict[str, str] = {}
    for row in picked.orderBy("validated_at").collect():
        if row["by"] != INGEST:
            failed.pop(row["table_name"], None)
        if not row["success"]:
            failed[row["table_name"]] = f"{row['scope']}: {', '.join(row['failed'])}"
    return failed


def forgotten_events(settings: Settings) -> int:
    """The `events` rows forget-user removed: they were counted valid by their batch."""
    requests = peek(settings, tables.FORGET_REQUESTS, ["rows_removed"]) or []
    return sum(dict(request["rows_removed"] or []).get(tables.EVENTS, 0) for request in requests)


def _unaggregated_runs(settings: Settings, columns: list[str]) -> list[dict]:
    ingested = peek(settings, tables.INGEST_RUNS, columns) or []
    covered = {batch for run in peek(settings, tables.AGGREGATE_RUNS, ["batches"]) or [] for batch in run["batches"]}
    return sorted((run for run in ingested if run["batch"] not in covered), key=lambda run: run["batch"])
