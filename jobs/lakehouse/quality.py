"""`lakehouse validate`: a table's quality gate over the rows just written, taking over ingest's own checks of those
batches when they ran with the same suite and parameters; a failure stops the pipeline short of publishing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import state, tables
from lakehouse.config import Settings
from lakehouse.dates import months_of
from lakehouse.errors import LakehouseError, QualityGateFailed
from lakehouse.gx_suites import (
    Scope,
    check,
    import_gx_meanwhile,
    parameters,
    quarantine_share,
    record_validation,
    suite_digest,
    suite_path,
)
from lakehouse.session import spark_session
from lakehouse.state import INGEST, VALIDATE
from lakehouse.storage import read

# The ingest tables, checked by ingest per batch.
BATCH_TABLES = tuple(name for name in tables.WITH_SUITE if name not in tables.GOLD)


def validate(settings: Settings, table: str, day: date | None = None) -> dict:
    """Validates the rows `table` last got (or those of `day`), taking over ingest's checks of those batches when they
    ran with the suite and parameters a check now would use; records and returns the result. Raises
    QualityGateFailed, naming the failed expectations, when the suite fails."""
    suite_path(settings, table)
    batches = state.runs_to_validate(settings) if table in BATCH_TABLES and day is None else None
    taken_over = _checked_at_ingest(settings, table, batches) if batches else None
    if taken_over is None:
        import_gx_meanwhile()
    spark = spark_session(settings)
    if taken_over is None:
        scope = _scope(spark, settings, table, day, batches)
        checked = check(settings, table, scope)
    else:
        checked = taken_over
    record_validation(spark, settings, checked, VALIDATE)
    if not checked["success"]:
        failed = ", ".join(checked["failed"])
        raise QualityGateFailed(f"{table} ({checked['scope']}) failed {failed}; report: {checked['docs']}")
    summary = {key: checked[key] for key in ("table_name", "scope", "success", "rows", "failed", "docs")}
    return summary | {"checked_at_ingest": checked["checked_by"] == INGEST}


def _scope(spark: SparkSession, settings: Settings, table: str, day: date | None, batches: list[dict] | None) -> Scope:
    suite_parameters = parameters(settings, datetime.now(UTC))
    stored = _table(spark, settings, table)
    if table in BATCH_TABLES:
        return _ingest_scope(settings, table, stored, day, batches)
    if day is not None:
        return Scope(day.isoformat(), _of_days(stored, [day]), suite_parameters)
    last = state.last_aggregate_run(settings)
    if last is None:
        raise LakehouseError(f"nothing to validate in {table}: no aggregate run yet")
    # The months a run rolled up: its days' and those the rollup lacked (a run recorded before runs named their
    # months: its days').
    months = last.get("months")
    label = f"aggregate run {last['run_id']}"
    return Scope(label, _of_days(stored, last["days"], months), suite_parameters)


def _of_days(gold: DataFrame, days: list[date], months: list[date] | None = None) -> DataFrame:
    """The rows of a gold table for `days`: theirs in a daily table; in the monthly rollup, those of `months` (by
    default the months of `days`)."""
    if "event_month" in gold.columns:
        return gold.where(F.col("event_month").isin(months if months is not None else months_of(days)))
    return gold.where(F.col("event_date").isin(days))


def _ingest_scope(
    settings: Settings, table: str, stored: DataFrame, day: date | None, batches: list[dict] | None
) -> Scope:
    """The rows of `batches` (`_batches_in_scope`), or of `day` (event date for `events`, ingest date for
    `quarantine`)."""
    # `batches` were read from `ingest_runs` already; a day's are read here.
    runs = state.ingest_runs(settings) if day is not None else batches
    if not runs:
        raise LakehouseError(f"nothing to validate in {table}: no ingest batch yet")
    ingested_by = datetime.now(UTC)
    if day is not None:
        runs = [run for run in runs if run["started_at"].astimezone(UTC).date() == day]
        label = day.isoformat()
        date_column = "event_date" if table == tables.EVENTS else "ingest_date"
        rows = stored.where(F.col(date_column) == day)
    else:
        label = _label(runs)
        started = [run["started_at"] for run in runs]
        ingested_by = max(started)
        partitions = (
            F.col("event_date").isin(sorted({touched for run in runs for touched in run["event_dates"]}))
            if table == tables.EVENTS
            else F.col("ingest_date").isin(sorted({moment.astimezone(UTC).date() for moment in started}))
        )
        rows = stored.where(partitions & F.unix_micros("ingested_at").isin([_micros(m) for m in started]))
    if table == tables.QUARANTINE:
        lines = sum(run["lines_read"] for run in runs)
        rows = rows.withColumn("_quarantine_share", F.lit(quarantine_share(sum(r["quarantined"] for r in runs), lines)))
    return Scope(label, rows, parameters(settings, ingested_by))


def _label(runs: list[dict]) -> str:
    numbers = [run["batch"] for run in runs]
    return f"batch {numbers[0]}" if len(numbers) == 1 else f"batches {numbers[0]}–{numbers[-1]}"


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def _checked_at_ingest(settings: Settings, table: str, batches: list[dict]) -> dict | None:
    """One record of ingest's own checks of `batches`, when ingest checked each of them with the suite and parameters
    a check now would use; None otherwise (a batch ingested before ingest checked, a suite or setting changed)."""
    path = suite_path(settings, table)
    recorded = state.validations(settings)
    if not path.is_file() or not recorded or "checked_by" not in recorded[0]:
        return None
    latest = {}
    for found in recorded:
        if found["checked_by"] == INGEST and found["table_name"] == table:
            latest[found["scope"]] = found
    checked = [latest.get(_label([run])) for run in batches]
    wanted = [suite_digest(path, parameters(settings, run["started_at"])) for run in batches]
    if any(record is None or record["suite_digest"] != digest for record, digest in zip(checked, wanted, strict=True)):
        return None
    return _combined(table, _label(batches), checked)


def _combined(table: str, label: str, records: list[dict]) -> dict:
    """Per-batch records as one: an expectation fails if it failed in any batch; counts are summed; the samples are
    those of the first batch that broke it."""
    checks: dict[str, dict] = {}
    for record in records:
        for found in json.loads(record["result"]):
            kept = checks.get(found["name"])
            if kept is None:
                checks[found["name"]] = found
                continue
            if not found["success"] and kept["success"]:
                kept.update({key: found[key] for key in ("success", "sample", "rows", "error")})
            for key in ("element_count", "unexpected_count"):
                kept[key] = None if kept[key] is None or found[key] is None else kept[key] + found[key]
            kept["unexpected_percent"] = None
    return {
        "validation_id": str(uuid.uuid4()),
        "table_name": table,
        "scope": label,
        "validated_at": datetime.now(UTC),
        "success": all(record["success"] for record in records),
        "rows": sum(record["rows"] for record in records),
        "failed": sorted({name for record in records for name in record["failed"]}),
        "checks": list(checks.values()),
        "docs": records[-1]["docs"],
        "suite_digest": None,
        "checked_by": INGEST,
    }


def _table(spark: SparkSession, settings: Settings, table: str) -> DataFrame:
    stored = read(spark, settings, table)
    if stored is None:
        raise LakehouseError(f"nothing to validate: table {table} does not exist yet")
    return stored
