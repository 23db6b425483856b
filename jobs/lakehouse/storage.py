"""The thin I/O edge of the jobs: reading and writing the lake's Delta tables, and retrying on write conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

CONCURRENT_WRITES = (
    ConcurrentAppendException, ConcurrentDeleteDeleteException, ConcurrentDeleteReadException,
    ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException, ProtocolChangedException,
)  # fmt: skip
MAX_CONFLICTS = 10
T = TypeVar("T")


def read(spark: SparkSession, settings: Settings, table: str, version: int | None = None) -> DataFrame | None:
    """Table `table` of the lake (as of `version` if given), or None before its first write."""
    path = tables.table_path(settings, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    reader = spark.read.format("delta")
    return (reader if version is None else reader.option("versionAsOf", version)).load(path)


def version(spark: SparkSession, settings: Settings, table: str) -> int:
    """The latest version of `table`, -1 before its first write."""
    path = tables.table_path(settings, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    return DeltaTable.forPath(spark, path).history(1).select("version").first()["version"]


def append(
    frame: DataFrame,
    settings: Settings,
    table: str,
    partitions: tuple[str, ...] = (),
    txn: tuple[str, int] | None = None,
    new_columns: bool = False,
) -> None:
    """Appends `frame` to `table`; with `txn` = (writer, version), at most once: Delta skips a write it already has.
    `new_columns`: columns `frame` has and the table not yet are added to it (a table written by an older version)."""
    writer = frame.write.format("delta").mode("append").partitionBy(*partitions)
    if new_columns:
        writer = writer.option("mergeSchema", "true")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(tables.table_path(settings, table))


def replace_days(
    frame: DataFrame,
    settings: Settings,
    table: str,
    days: Iterable[date],
    new_columns: bool = False,
    column: str = "event_date",
) -> None:
    """Replaces the `days` of `table` (partitioned by `column`, a date) with `frame` in one commit: readers see the
    old days or the new ones, and a day `frame` has no rows for ends up empty. `new_columns` as for `append`."""
    listed = ", ".join(f"DATE'{day.isoformat()}'" for day in sorted(set(days)))
    writer = frame.write.format("delta").mode("overwrite").partitionBy(column)
    if new_columns:
        writer = writer.option("mergeSchema", "true")
    writer.option("replaceWhere", f"{column} IN ({listed})").save(tables.table_path(settings, table))


def peek(settings: Settings, table: str, columns: list[str] | None) -> list[dict] | None:
    """`columns` (None: all) of a small table, read through delta-rs rather than Spark: for the checks that must not
    start a JVM (the DAGs' gates) and the state tables a command reads before its work (a Spark read of a small table
    is a job or two, ~1 s, and several on a cold JVM). None before the table's first write."""
    import pyarrow
    from deltalake import QueryBuilder

    found = _rust_table(settings, table)
    if found is None:
        return None
    # Scanned by delta-rs's own engine: the pyarrow dataset of `to_pyarrow_table` leaves threads that, on S3, often
    # abort the process as it exits ("terminate called without an active exception"), after the answer was printed.
    listed = "*" if columns is None else ", ".join(f'"{column}"' for column in columns)
    return pyarrow.table(QueryBuilder().register("t", found).execute(f"SELECT {listed} FROM t").read_all()).to_pylist()


def peek_version(settings: Settings, table: str) -> int:
    """The latest version of `table` as delta-rs reads it from the log (no Spark job), -1 before its first write."""
    found = _rust_table(settings, table)
    return -1 if found is None else found.version()


def rows_by_partition(settings: Settings, table: str, column: str) -> dict[Any, int | None]:
    """Rows of `table` per value of its partition column `column`, from the row count Delta's log keeps for each file
    (no data file read, no Spark job); None for a value one of whose files has no count. Empty before the first
    write."""
    import pyarrow

    found = _rust_table(settings, table)
    if found is None:
        return {}
    files = pyarrow.table(found.get_add_actions(flatten=True))
    rows: dict[Any, int | None] = {}
    for value, count in zip(files[f"partition.{column}"].to_pylist(), files["num_records"].to_pylist(), strict=True):
        known = rows.get(value, 0)
        rows[value] = None if known is None or count is None else known + count
    return rows


def _rust_table(settings: Settings, table: str) -> Any:
    """delta-rs's handle on `table` at its latest version, or None before the table's first write."""
    from deltalake import DeltaTable as RustTable
    from deltalake.exceptions import TableNotFoundError

    location = tables.table_path(settings, table)
    try:
        return RustTable(_rust_location(location), storage_options=_rust_storage(settings, location))
    except TableNotFoundError:
        return None


def _rust_location(location: str) -> str:
    """`location` as delta-rs names it: Hadoop's s3a:// is its s3://."""
    return "s3://" + location.removeprefix("s3a://") if location.startswith("s3a://") else location


def _rust_storage(settings: Settings, location: str) -> dict[str, str] | None:
    """delta-rs's storage options for a table on S3, from the `s3:` settings; without keys, delta-rs takes the AWS
    environment variables. Reading needs no conditional put or locking (writers do)."""
    if not location.startswith("s3a://"):
        return None
    s3 = settings.s3
    options = s3.as_properties("AWS_REGION", "AWS_ENDPOINT_URL", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    if s3.endpoint:
        options["AWS_ALLOW_HTTP"] = str(s3.endpoint.startswith("http://")).lower()
    elif not s3.path_style_access:
        # delta-rs asks by path unless told otherwise; with an endpoint of its own it must (a virtual-hosted one would
        # have to name the bucket).
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "true"
    return options


def retry_on_conflict(work: Callable[[], T], attempts: int = MAX_CONFLICTS) -> T:
    """`work()`, run again (after a growing random pause) while another writer's commit makes Delta refuse ours;
    `work` must re-read what it depends on, so each attempt starts from the table as it now is."""
    attempt = 1
    while True:
        try:
            return work()
        except CONCURRENT_WRITES as exc:
            if attempt >= attempts:
                message = f"gave up after {attempt} concurrent-write conflicts: {exc.getMessage()}"
                raise LakehouseError(message) from None
            time.sleep(random.uniform(0.5, 2.0) * attempt)
            attempt += 1
