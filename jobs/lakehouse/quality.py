"""`lakehouse validate`: the table's Great Expectations suite (expectations/<table>.json) over the rows just written —
the ingest batches not aggregated yet (else the latest one), the latest aggregate run, or one day — with the result
recorded in `_quality/validations` and rendered as GX Data Docs under `_quality/docs`. The publish step refuses
tables whose latest validation failed.

Ingest checks each batch's `events` and `quarantine` rows itself while it still holds them in memory (`check_batch`),
and records the outcome (`checked_by` = ingest). `validate` then takes those outcomes for the batches it covers
instead of reading the rows again, when each was checked with the same suite and parameters (`suite_digest`); its own
record (`checked_by` = validate) is what the publish gate reads.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.aggregate import months_of, unaggregated_batches
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError, QualityGateFailed
from lakehouse.session import spark_session
from lakehouse.storage import append, peek, read

VALIDATION_SCHEMA = (
    "validation_id string, table_name string, scope string, validated_at timestamp, success boolean, rows long, "
    "failed array<string>, result string, docs string, checked_by string, suite_digest string"
)
INGEST, VALIDATE = "ingest", "validate"
# The ingest tables, checked by ingest per batch.
BATCH_TABLES = (tables.EVENTS, tables.QUARANTINE)
RUN_COLUMNS = ["batch", "started_at", "event_dates", "quarantined", "lines_read"]
SAMPLE_SIZE = 20

# Columns the suites compare with, derived from each row itself.
CHECK_COLUMNS: dict[str, Callable[[], dict[str, Column]]] = {
    tables.EVENTS: lambda: {"_date_of_event_ts": F.to_date("event_ts"), "_hour_of_event_ts": F.hour("event_ts")},
    tables.QUARANTINE: lambda: {"_date_of_ingested_at": F.to_date("ingested_at")},
    tables.DAILY_USER_ACTIVITY: lambda: {
        "_date_of_first_seen": F.to_date("first_seen"),
        "_date_of_last_seen": F.to_date("last_seen"),
    },
    tables.DAILY_EVENT_STATS: lambda: {},
    tables.MONTHLY_USER_ACTIVITY: lambda: {"_day_of_event_month": F.dayofmonth("event_month")},
}
TABLES = tuple(CHECK_COLUMNS)


@dataclass(frozen=True)
class Scope:
    """The rows of one validation, what to call them, and the suite parameters that depend on them."""

    label: str
    rows: DataFrame
    parameters: dict[str, Any]


def checkable(table: str, rows: DataFrame) -> DataFrame:
    """`rows` with the derived columns the table's suite compares against."""
    return rows.withColumns(CHECK_COLUMNS[table]())


def validate(settings: Settings, table: str, day: date | None = None) -> dict:
    """Validates the rows `table` last got (or those of `day`), taking over ingest's checks of those batches when they
    ran with the suite and parameters a check now would use; records and returns the result. Raises
    QualityGateFailed, naming the failed expectations, when the suite fails."""
    if table not in CHECK_COLUMNS:
        raise LakehouseError(f"no suite for table {table!r}; one of: {', '.join(TABLES)}")
    batches = _batches_in_scope(settings) if table in BATCH_TABLES and day is None else None
    record = _checked_at_ingest(settings, table, batches) if batches else None
    if record is None:
        import_gx_meanwhile()
    spark = spark_session(settings)
    if record is None:
        scope = _scope(spark, settings, table, day, batches)
        record = check(settings, table, scope)
    _record(spark, settings, record | {"checked_by": VALIDATE})
    if not record["success"]:
        failed = ", ".join(record["failed"])
        raise QualityGateFailed(f"{table} ({record['scope']}) failed {failed}; report: {record['docs']}")
    summary = {key: record[key] for key in ("table_name", "scope", "success", "rows", "failed", "docs")}
    return summary | {"checked_at_ingest": record["checked_by"] == INGEST}


def check_batch(
    spark: SparkSession, settings: Settings, batch: int, started_at: datetime, rows: dict[str, DataFrame]
) -> dict[str, bool]:
    """Checks and records the rows one ingest batch wrote (`rows`: per table in BATCH_TABLES, the quarantine rows
    with `_quarantine_share`); whether each table's suite passed. Gates nothing: `validate` does."""
    outcome = {}
    for table in BATCH_TABLES:
        record = check(settings, table, Scope(f"batch {batch}", rows[table], parameters(settings, started_at)))
        _record(spark, settings, record | {"checked_by": INGEST})
        outcome[table] = record["success"]
    return outcome


def check(settings: Settings, table: str, scope: Scope) -> dict:
    """The result of the table's suite over the rows of `scope`, with Data Docs pages for it."""
    suite_path = _suite_path(settings, table)
    suite = load_suite(suite_path)
    rows = checkable(table, scope.rows).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # A pass/fail answer takes few Spark jobs; the counts, samples and row ids of what failed take many more,
        # so a failing suite runs again for its details (the report then has both runs).
        record = _run_suite(settings, suite, table, scope, rows, {"result_format": "BOOLEAN_ONLY"})
        if not record["success"]:
            record = _run_suite(settings, suite, table, scope, rows, _detailed(suite))
        record["rows"] = rows.count()
    finally:
        rows.unpersist()
    return record | {"suite_digest": suite_digest(suite_path, scope.parameters), "checked_by": None}


def suite_digest(suite_path: Path, suite_parameters: dict[str, Any]) -> str:
    """What a check's outcome depends on besides the rows: the suite file's bytes and the parameters' values."""
    listed = json.dumps(suite_parameters, sort_keys=True, default=_text)
    return hashlib.sha256(suite_path.read_bytes() + b"\0" + listed.encode()).hexdigest()


def failed_tables(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Each table whose latest validation failed, or whose rows failed ingest's own check since, with what failed
    (ingest's passing checks clear nothing: a later batch passing says nothing of an earlier one)."""
    validations = read(spark, settings, tables.VALIDATIONS)
    if validations is None:
        return {}
    by = F.col("checked_by") if "checked_by" in validations.columns else F.lit(None).cast("string")
    picked = validations.select("table_name", "scope", "success", "failed", by.alias("by"), "validated_at")
    failed: dict[str, str] = {}
    for row in picked.orderBy("validated_at").collect():
        if row["by"] != INGEST:
            failed.pop(row["table_name"], None)
        if not row["success"]:
            failed[row["table_name"]] = f"{row['scope']}: {', '.join(row['failed'])}"
    return failed


def import_gx_meanwhile() -> None:
    """Imports GX (~4 s) in a thread, so that it overlaps other work (validate's JVM start, ingest's batch) rather
    than following it; the first `import great_expectations` of this process waits for it to finish."""
    threading.Thread(target=importlib.import_module, args=("great_expectations",), daemon=True).start()


def load_suite(path: Path) -> Any:
    """The suite in `path`, refusing expectations GX would otherwise drop silently (an unknown type)."""
    import great_expectations as gx

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        suite = gx.ExpectationSuite(**raw)
    except FileNotFoundError:
        raise LakehouseError(f"suite not found: {path}") from None
    except (ValueError, TypeError) as exc:
        raise LakehouseError(f"{path}: not a valid suite: {str(exc).splitlines()[0]}") from None
    if len(suite.expectations) != len(raw.get("expectations", [])):
        raise LakehouseError(f"{path}: holds expectations GX does not know; check their types")
    return suite


def parameters(settings: Settings, ingested_by: datetime) -> dict[str, Any]:
    """The values of the suites' $PARAMETERs, from conf/, for rows ingested by `ingested_by` at the latest."""
    quality, window = settings.quality, settings.ingest
    return {
        "min_event_ts": window.min_event_time,
        "max_event_ts": ingested_by + timedelta(seconds=window.max_future_seconds),
        "countries": list(quality.countries),
        "country_mostly": quality.country_mostly,
        "max_quarantine_share": quality.max_quarantine_share,
    }


def _scope(spark: SparkSession, settings: Settings, table: str, day: date | None, batches: list[dict] | None) -> Scope:
    suite_parameters = parameters(settings, datetime.now(UTC))
    stored = _table(spark, settings, table)
    if table in BATCH_TABLES:
        return _ingest_scope(settings, table, stored, day, batches)
    if day is not None:
        return Scope(day.isoformat(), _of_days(stored, [day]), suite_parameters)
    runs = read(spark, settings, tables.AGGREGATE_RUNS)
    last = None if runs is None else runs.where(F.size("days") > 0).orderBy(F.desc("finished_at")).first()
    if last is None:
        raise LakehouseError(f"nothing to validate in {table}: no aggregate run yet")
    # The months a run rolled up: its days' and those the rollup lacked (a run recorded before runs named their
    # months: its days').
    months = last.asDict().get("months")
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
    runs = peek(settings, tables.INGEST_RUNS, RUN_COLUMNS) if day is not None else batches
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


def quarantine_share(quarantined: int, lines_read: int) -> float:
    """The share of lines quarantine took, as the quarantine suite's `_quarantine_share` column holds it."""
    return quarantined / lines_read if lines_read else 0.0


def _batches_in_scope(settings: Settings) -> list[dict]:
    """The `ingest_runs` rows (RUN_COLUMNS) of the batches a validation without a day covers: every batch still
    waiting for the aggregates (a backlog is ingested as several), else the latest one; none before the first."""
    runs = peek(settings, tables.INGEST_RUNS, RUN_COLUMNS) or []
    waiting = set(unaggregated_batches(settings))
    picked = [run for run in runs if run["batch"] in waiting] or sorted(runs, key=lambda run: run["batch"])[-1:]
    return sorted(picked, key=lambda run: run["batch"])


def _suite_path(settings: Settings, table: str) -> Path:
    return Path(settings.quality.suites) / f"{table}.json"


def _label(runs: list[dict]) -> str:
    numbers = [run["batch"] for run in runs]
    return f"batch {numbers[0]}" if len(numbers) == 1 else f"batches {numbers[0]}–{numbers[-1]}"


def _text(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def _checked_at_ingest(settings: Settings, table: str, batches: list[dict]) -> dict | None:
    """One record of ingest's own checks of `batches`, when ingest checked each of them with the suite and parameters
    a check now would use; None otherwise (a batch ingested before ingest checked, a suite or setting changed)."""
    suite_path = _suite_path(settings, table)
    recorded = peek(settings, tables.VALIDATIONS, None) or []
    if not suite_path.is_file() or not recorded or "checked_by" not in recorded[0]:
        return None
    latest = {}
    for record in sorted(recorded, key=lambda record: record["validated_at"]):
        if record["checked_by"] == INGEST and record["table_name"] == table:
            latest[record["scope"]] = record
    checked = [latest.get(_label([run])) for run in batches]
    wanted = [suite_digest(suite_path, parameters(settings, run["started_at"])) for run in batches]
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


def _run_suite(settings: Settings, suite: Any, table: str, scope: Scope, rows: DataFrame, result_format: dict) -> dict:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = _context(_quality_dir(settings))
    suite = context.suites.add_or_update(suite)
    batches = context.data_sources.add_spark(name="lake").add_dataframe_asset(name=table)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=table, data=batches.add_batch_definition_whole_dataframe("rows"), suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=table,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["lake"])],
            result_format=result_format,
        )
    )
    detail = "" if result_format["result_format"] == "BOOLEAN_ONLY" else " (details)"
    run_id = RunIdentifier(run_name=f"{table} {scope.label}{detail}", run_time=datetime.now(UTC))
    result = checkpoint.run(
        batch_parameters={"dataframe": rows}, expectation_parameters=scope.parameters, run_id=run_id
    )
    return _summary(table, scope, result, context.get_docs_sites_urls(site_name="lake")[0]["site_url"])


def _detailed(suite: Any) -> dict:
    """A result format with counts, sample values and the ids of sample rows that broke an expectation."""
    ids = suite.meta.get("row_id_columns")
    return {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
        **({"unexpected_index_column_names": ids} if ids else {}),
    }


def _context(quality_dir: str) -> Any:
    """A GX context whose suites and results live under `quality_dir` (so the Data Docs site, rebuilt from them on
    every run, keeps listing every table and every earlier run) and whose other state is in memory."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    def on_disk(folder: str) -> dict:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": f"{quality_dir}/{folder}"}

    stores = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores.stores[stores.expectations_store_name]["store_backend"] = on_disk("suites")
    stores.stores[stores.validation_results_store_name]["store_backend"] = on_disk("results")
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": on_disk("docs"),
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=stores,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={"lake": site},
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _quality_dir(settings: Settings) -> str:
    """Where GX keeps suites, results and Data Docs: `quality.dir`, else `_quality` under a local lake root (GX
    writes local files only)."""
    if settings.quality.dir:
        return str(Path(settings.quality.dir).resolve())
    location = urlparse(tables.table_path(settings, tables.QUALITY))
    if location.scheme != "file":
        raise LakehouseError("quality.dir must name a local folder when lake.root is not local")
    return location.path


def _summary(table: str, scope: Scope, result: Any, docs: str) -> dict:
    """The compact, JSON-able record of a checkpoint result: what failed, how often, on which rows."""
    (validation,) = result.run_results.values()
    checks = [_check(outcome) for outcome in validation.results]
    return {
        "validation_id": str(uuid.uuid4()),
        "table_name": table,
        "scope": scope.label,
        "validated_at": result.run_id.run_time,
        "success": bool(result.success),
        "failed": sorted(check["name"] for check in checks if not check["success"]),
        "checks": checks,
        "docs": docs,
    }


def _check(outcome: Any) -> dict:
    kwargs, found = outcome.expectation_config.kwargs, outcome.result or {}
    columns = kwargs.get("column") or kwargs.get("column_list") or [kwargs.get("column_A"), kwargs.get("column_B")]
    subject = columns if isinstance(columns, str) else ", ".join(str(c) for c in columns if c)
    error = (outcome.exception_info or {}).get("exception_message")
    return {
        "name": f"{outcome.expectation_config.type}({subject})",
        "success": bool(outcome.success),
        "element_count": found.get("element_count"),
        "unexpected_count": found.get("unexpected_count"),
        "unexpected_percent": found.get("unexpected_percent"),
        "sample": found.get("partial_unexpected_list"),
        "rows": found.get("partial_unexpected_index_list"),
        "error": error if (outcome.exception_info or {}).get("raised_exception") else None,
    }


def _record(spark: SparkSession, settings: Settings, record: dict) -> None:
    row = (
        record["validation_id"], record["table_name"], record["scope"], record["validated_at"], record["success"],
        record["rows"], record["failed"], json.dumps(record["checks"], default=str), record["docs"],
        record["checked_by"], record["suite_digest"],
    )  # fmt: skip
    append(spark.createDataFrame([row], VALIDATION_SCHEMA), settings, tables.VALIDATIONS, new_columns=True)
