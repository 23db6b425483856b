"""`lakehouse publish`: registers the lake's published tables in Trino (schema `lake`) and makes schema `bi` hold
exactly the views of `sql/`; changes nothing while the latest validation of any table failed."""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse import state, tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError, QualityGateFailed
from lakehouse.session import spark_session
from lakehouse.storage import exists
from lakehouse.trino_client import BI, LAKE, QueryError, query
from lakehouse.trino_server import location

_COMMENT = re.compile(r"--[^\n]*")


def publish(settings: Settings) -> dict:
    """Registers the tables not yet registered, then (re)creates the views; a summary of what it did. Raises
    QualityGateFailed, changing nothing, when a table's latest validation failed."""
    spark = spark_session(settings)
    failed = state.failed_tables(spark, settings)
    if failed:
        named = "; ".join(f"{table} ({what})" for table, what in sorted(failed.items()))
        raise QualityGateFailed(f"not publishing: the latest validation failed for {named}")
    for schema in (LAKE, BI):
        query(settings, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    registered, known = register_tables(spark, settings)
    created, waiting, dropped = create_views(settings)
    return {"registered": registered, "already_registered": known, "views": created,
            "views_waiting_for_tables": waiting, "views_dropped": dropped}  # fmt: skip


def register_tables(spark: SparkSession, settings: Settings) -> tuple[list[str], list[str]]:
    """Registers every published table of the catalogue that the lake holds and schema `lake` lacks; the names
    registered now, and those registered before."""
    known = {row[0] for row in query(settings, f"SHOW TABLES FROM {LAKE}").rows}
    new = [name for name in tables.PUBLISHED if name not in known and exists(spark, settings, name)]
    for name in new:
        where = location(settings, name).replace("'", "''")
        query(settings, f"CALL system.register_table(schema_name => '{LAKE}', table_name => '{name}', "
                        f"table_location => '{where}')")  # fmt: skip
    return new, sorted(known)


def create_views(settings: Settings) -> tuple[list[str], dict[str, str], list[str]]:
    """Creates or replaces one view per `.sql` file and drops the views of `bi` no file defines any more; the views
    created, those whose tables do not exist yet (with Trino's reason), and those dropped."""
    files = sorted(Path(settings.trino.views_dir).glob("*.sql"))
    if not files:
        raise LakehouseError(f"no view definitions (*.sql) in {settings.trino.views_dir}")
    created, waiting = [], {}
    for path in files:
        try:
            query(settings, _view_statement(path))
            created.append(path.stem)
        except QueryError as exc:
            if exc.error_name != "TABLE_NOT_FOUND":
                raise LakehouseError(f"{path}: {exc}") from None
            waiting[path.stem] = str(exc)
    # Every other view of the catalog goes, whatever schema holds it: no view but those of sql/ is served.
    listed = query(
        settings,
        "SELECT table_schema, table_name FROM information_schema.views WHERE table_schema <> 'information_schema'",
    ).rows
    defined = {(BI, path.stem) for path in files}
    stray = sorted({(schema, name) for schema, name in listed} - defined)
    for schema, name in stray:
        query(settings, f'DROP VIEW "{schema}"."{name}"')
    return created, waiting, [name if schema == BI else f"{schema}.{name}" for schema, name in stray]


def _view_statement(path: Path) -> str:
    """The file's statement, checked to replace view `bi.<file name>` with the invoker's rights: a view with its
    owner's rights would let `analyst` read through it what the access rules hide (quarantine, events)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LakehouseError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}): save it as UTF-8") from None
    shape = rf"\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+{BI}\.{re.escape(path.stem)}\s+(COMMENT\s+'(?:[^']|'')*'\s+)?" \
            r"SECURITY\s+INVOKER\s+AS\s"  # fmt: skip
    if not re.match(shape, _COMMENT.sub("", text), re.IGNORECASE):
        raise LakehouseError(
            f"{path}: expected CREATE OR REPLACE VIEW {BI}.{path.stem} [COMMENT '…'] SECURITY INVOKER AS …"
        )
    return text
