"""The Great Expectations side of the quality gates: a table's suite (`expectations/<table>.json`) loaded and run
over a DataFrame, its results as a plain record in `_quality/validations`, and the Data Docs under `_quality/docs`."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.records import Validation
from lakehouse.storage import append_records

SAMPLE_SIZE = 20


@dataclass(frozen=True)
class Scope:
    """The rows of one validation, what to call them, and the suite parameters that depend on them."""

    label: str
    rows: DataFrame
    parameters: dict[str, Any]


def suite_path(settings: Settings, table: str) -> Path:
    """The suite of `table`, one of the catalogue's tables with a suite."""
    if table not in tables.WITH_SUITE:
        raise LakehouseError(f"no suite for table {table!r}; one of: {', '.join(tables.WITH_SUITE)}")
    return Path(settings.quality.suites) / f"{table}.json"


def check(settings: Settings, table: str, scope: Scope) -> dict:
    """The result of the table's suite over the rows of `scope`, with Data Docs pages for it."""
    path = suite_path(settings, table)
    suite = load_suite(path)
    rows = derived(suite, scope.rows).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # A pass/fail answer takes few Spark jobs; the counts, samples and row ids of what failed take many more,
        # so a failing suite runs again for its details (the report then has both runs).
        record = _run_suite(settings, suite, table, scope, rows, {"result_format": "BOOLEAN_ONLY"})
        if not record["success"]:
            record = _run_suite(settings, suite, table, scope, rows, _detailed(suite))
        record["rows"] = rows.count()
    finally:
        rows.unpersist()
    return record | {"suite_digest": suite_digest(path, scope.parameters), "checked_by": None}


def suite_digest(suite_path: Path, suite_parameters: dict[str, Any]) -> str:
    """What a check's outcome depends on besides the rows: the suite file's bytes and the parameters' values."""
    listed = json.dumps(suite_parameters, sort_keys=True, default=_text)
    return hashlib.sha256(suite_path.read_bytes() + b"\0" + listed.encode()).hexdigest()


def derived(suite: Any, rows: DataFrame) -> DataFrame:
    """`rows` with the columns the suite compares against, derived from each row as its `derived_columns` (Spark SQL
    expressions, in the suite's meta) say."""
    return rows.withColumns({name: F.expr(sql) for name, sql in suite.meta.get("derived_columns", {}).items()})


def record_validation(spark: SparkSession, settings: Settings, checked: dict, checked_by: str) -> None:
    """Appends the result of a check (`check`'s record) to `_quality/validations`, as checked by `checked_by`."""
    row = Validation(
        checked["validation_id"], checked["table_name"], checked["scope"], checked["validated_at"], checked["success"],
        checked["rows"], tuple(checked["failed"]), json.dumps(checked["checks"], default=str), checked["docs"],
        checked_by, checked["suite_digest"],
    )  # fmt: skip
    append_records(spark, settings, tables.VALIDATIONS, [row], new_columns=True)


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


def quarantine_share(quarantined: int, lines_read: int) -> float:
    """The share of lines quarantine took, as the quarantine suite's `_quarantine_share` column holds it."""
    return quarantined / lines_read if lines_read else 0.0


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


def _text(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)
