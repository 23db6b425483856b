"""The one I/O edge of the jobs: every Delta (Spark and delta-rs) and Hadoop file-system call, laid out as the
catalogue (`tables`) says; stages compute DataFrames and hand them here."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

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
from pyspark.sql import Column, DataFrame, SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.records import Record

CONCURRENT_WRITES = (
    ConcurrentAppendException, ConcurrentDeleteDeleteException, ConcurrentDeleteReadException,
    ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException, ProtocolChangedException,
)  # fmt: skip
MAX_CONFLICTS = 10
# Marks the commits made meanwhile (`tagged_commits`), in each commit's `userMetadata`.
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# Delta 4 ignores VACUUM's retention argument (other than 0) unless told otherwise, in favour of a table property;
# setting that property would be a metadata commit every concurrent writer conflicts with.
_VACUUM_CONF = {
    "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
    # Each vacuum leaves a commit: purge relies on one after the commits it erases.
    "spark.databricks.delta.vacuum.logging.enabled": "true",
}
_LOG_ENTRY = re.compile(r"^(\d{20})\.(json|crc|checkpoint(\.\d+\.\d+)?\.parquet)$")
T = TypeVar("T")


def read(spark: SparkSession, settings: Settings, table: str, version: int | None = None) -> DataFrame | None:
    """Table `table` of the lake (as of `version` if given), or None before its first write."""
    path = tables.table_path(settings, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    reader = spark.read.format("delta")
    return (reader if version is None else reader.option("versionAsOf", version)).load(path)


def exists(spark: SparkSession, settings: Settings, table: str) -> bool:
    """Whether `table` has been written."""
    return DeltaTable.isDeltaTable(spark, tables.table_path(settings, table))


def version(spark: SparkSession, settings: Settings, table: str) -> int:
    """The latest version of `table`, -1 before its first write."""
    if not exists(spark, settings, table):
        return -1
    return _delta(spark, settings, table).history(1).select("version").first()["version"]


def append(
    frame: DataFrame, settings: Settings, table: str, txn: tuple[str, int] | None = None, new_columns: bool = False
) -> None:
    """Appends `frame` to `table`, partitioned and laid out as the catalogue says; with `txn` = (writer, version), at
    most once: Delta skips a write it already has. `new_columns`: columns `frame` has and the table not yet are added
    to it (a table written by an older version)."""
    entry = tables.table(table)
    writer = entry.layout.apply(frame, entry.partitions).write.format("delta").mode("append")
    writer = writer.partitionBy(*entry.partitions)
    if new_columns:
        writer = writer.option("mergeSchema", "true")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(tables.table_path(settings, table))


def append_records(
    spark: SparkSession,
    settings: Settings,
    table: str,
    records: Sequence[Record],
    txn: tuple[str, int] | None = None,
    new_columns: bool = False,
) -> None:
    """Appends `records` (of the table's record class) to `table`, in its catalogue schema; `txn` and `new_columns`
    as for `append`."""
    frame = spark.createDataFrame([record.row() for record in records], tables.table(table).schema)
    append(frame, settings, table, txn, new_columns)


def replace_partitions(
    frame: DataFrame, settings: Settings, table: str, values: Iterable[date], new_columns: bool = False
) -> None:
    """Replaces the partitions `values` of `table` (partitioned by one date column: a day or a month) with `frame`
    in one commit: readers see the old partitions or the new ones, and one `frame` has no rows for ends up empty.
    `new_columns` as for `append`."""
    entry = tables.table(table)
    (column,) = entry.partitions
    listed = ", ".join(f"DATE'{value.isoformat()}'" for value in sorted(set(values)))
    writer = entry.layout.apply(frame, entry.partitions).write.format("delta").mode("overwrite").partitionBy(column)
    if new_columns:
        writer = writer.option("mergeSchema", "true")
    writer.option("replaceWhere", f"{column} IN ({listed})").save(tables.table_path(settings, table))


def rewrite_partitions(spark: SparkSession, settings: Settings, table: str, where: str) -> None:
    """Rewrites the partitions of `table` that `where` selects, one file each, laid out as the table is written.

    For `events`, not OPTIMIZE ZORDER BY user_id: on one column, Z-ordering is range partitioning into files, and
    Delta writes each range unsorted, so a partition that fits in one file would lose its order. The rewrite is one
    commit with `dataChange` false (as OPTIMIZE's), so streaming readers skip it; it replaces the files it read, in
    the transaction's own snapshot, so rows an ingest appends meanwhile are neither lost nor doubled.
    """
    entry = tables.table(table)
    rows = read(spark, settings, table).where(where)
    (
        entry.layout.apply(rows, entry.partitions)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(*entry.partitions)
        .option("replaceWhere", where)
        .option("dataChange", "false")
        .save(tables.table_path(settings, table))
    )


def optimize(spark: SparkSession, settings: Settings, table: str, where: str) -> None:
    """Bin-packs the files of the partitions of `table` that `where` selects (all: empty) with Delta's OPTIMIZE."""
    optimizer = _delta(spark, settings, table).optimize()
    (optimizer.where(where) if where else optimizer).executeCompaction()


def delete(spark: SparkSession, settings: Settings, table: str, condition: Column) -> None:
    """Deletes the rows of `table` matching `condition` in one commit."""
    _delta(spark, settings, table).delete(condition)


@contextmanager
def tagged_commits(spark: SparkSession, tag: str) -> Iterator[None]:
    """Marks every commit made meanwhile with `tag` (its `userMetadata`), for `has_tagged_commit`."""
    with session_conf(spark, {USER_METADATA: tag}):
        yield


def has_tagged_commit(spark: SparkSession, settings: Settings, table: str, prefix: str) -> bool:
    """Whether the log of `table` still holds a commit whose tag starts with `prefix` (False for no table)."""
    from pyspark.sql import functions as F

    if not exists(spark, settings, table):
        return False
    history = _delta(spark, settings, table).history()
    return not history.where(F.startswith("userMetadata", F.lit(prefix))).isEmpty()


def live_files(spark: SparkSession, settings: Settings, table: str) -> DataFrame:
    """The data files of the table's latest version (`path`, `partitionValues`, `size`), listed from its Delta log
    without reading any data."""
    snapshot = _snapshot(spark, settings, table)
    return DataFrame(snapshot.allFiles().toDF(), spark).select("path", "partitionValues", "size")


def file_count(spark: SparkSession, settings: Settings, table: str) -> int:
    """The data files of the table's latest version, from its log."""
    return _snapshot(spark, settings, table).numOfFiles()


def vacuum(spark: SparkSession, settings: Settings, table: str, retention_hours: float) -> int:
    """Deletes the files `table` no longer references that are older than `retention_hours`; how many it deleted."""
    delta = _delta(spark, settings, table)
    # Vacuum lists the table's folders in as many tasks as file listing for partition discovery would use: 10,000
    # by default, which costs ~20 s even for a one-file table on two cores.
    listing = {"spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark.shuffle_partitions)}
    with session_conf(spark, {**_VACUUM_CONF, **listing}), _console_to_log(spark):
        delta.vacuum(retention_hours)
    ended = delta.history(10).where("operation = 'VACUUM END'").first()
    return int(ended["operationMetrics"]["numDeletedFiles"]) if ended else 0


def purge(spark: SparkSession, settings: Settings, table: str) -> int:
    """Physically deletes what `table`'s latest version no longer holds; returns the data files deleted.

    - every file a commit removed that Delta still lists (its tombstones, whatever their age): exactly the files the
      log names, so a file a concurrent writer has not committed yet is never touched, as a zero-hour vacuum would;
    - what the regular vacuum deletes (unreferenced files older than the retention, whose tombstones expired);
    - the log entries before a checkpoint of the latest version: their file statistics hold min/max values (and
      32-character prefixes) of the removed rows, and a DELETE's commit its predicate with its literals.

    Readers still on an older version lose its files, and time travel ends at that checkpoint.
    """
    path = tables.table_path(settings, table)
    removed = DataFrame(_snapshot(spark, settings, table).tombstones().toDF(), spark).select("path").collect()
    file_system = _file_system(spark, path)
    deleted = 0
    for row in removed:
        # A tombstone's path is relative to the table and URI-encoded (or absolute): resolved as Delta resolves it.
        file = spark._jvm.org.apache.spark.sql.delta.util.DeltaFileOperations.absolutePath(path, row["path"])
        deleted += bool(file_system.delete(file, False))
    deleted += vacuum(spark, settings, table, settings.maintenance.vacuum_retention_hours)
    _truncate_log(spark, settings, table)
    return deleted


@contextmanager
def session_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """Spark SQL settings for the statements run meanwhile, restored afterwards."""
    saved = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def list_files(spark: SparkSession, folder: str) -> list[tuple[str, str, str, int, int]]:
    """Every file under `folder` (a URI), recursively: its path relative to `folder`, its location, the URI Spark
    reports for the lines it reads from that location, its size and its modification time (epoch ms)."""
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(folder)
    fs = _file_system(spark, folder)
    prefix = fs.makeQualified(root).toUri().getPath().rstrip("/") + "/"
    found = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        path = status.getPath()
        location = path.toString()
        uri = _spark_uri(spark, location)
        relative = path.toUri().getPath().removeprefix(prefix)
        found.append((relative, location, uri, status.getLen(), status.getModificationTime()))
    return found


def open_read(spark: SparkSession, location: str) -> Any:
    """The bytes of the file at `location` as Spark reads them (decompressed by its name's ending), as a Java input
    stream."""
    path = spark._jvm.org.apache.hadoop.fs.Path(location)
    stream = _file_system(spark, location).open(path)
    codec = spark._jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(_hadoop_conf(spark)).getCodec(path)
    return stream if codec is None else codec.createInputStream(stream)


def open_write(spark: SparkSession, location: str) -> tuple[Any, str, str]:
    """A new file at `location` (replacing one there) as a Java output stream, with its qualified location and the
    URI Spark reports for the lines it reads from there (as `list_files` gives them)."""
    path = spark._jvm.org.apache.hadoop.fs.Path(location)
    file_system = _file_system(spark, location)
    qualified = file_system.makeQualified(path).toString()
    return file_system.create(path, True), qualified, _spark_uri(spark, qualified)


def _spark_uri(spark: SparkSession, location: str) -> str:
    """The URI Spark reports as the file of a line it read from `location`: that of the path it was given, made the
    same from the same string."""
    return spark._jvm.org.apache.hadoop.fs.Path(location).toUri().toString()


def delete_tree(spark: SparkSession, location: str) -> None:
    """Deletes whatever is at `location` (a file, or a folder and all under it); nothing there is no error."""
    _file_system(spark, location).delete(spark._jvm.org.apache.hadoop.fs.Path(location), True)


def local_files(location: str) -> list[str] | None:
    """Every file under the folder `location` on the local disk, as paths relative to it (as `list_files` gives
    them; links followed), listed without a JVM; None for a folder elsewhere (s3a://) or no folder there."""
    parsed = urlparse(location)
    root = Path(parsed.path)
    if parsed.scheme not in ("", "file") or not root.is_dir():
        return None
    return [os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(root, followlinks=True) for name in names]  # fmt: skip


def folder_exists(spark: SparkSession, location: str) -> bool:
    """Whether anything is at `location` (a URI)."""
    return bool(_file_system(spark, location).exists(spark._jvm.org.apache.hadoop.fs.Path(location)))


def rewrite_file(spark: SparkSession, location: str, change: Callable[[bytes], bytes], tag: str) -> None:
    """Replaces the file at `location` with `change` of its bytes, so that no reader ever sees half a file. On a local
    disk the new bytes go to a hidden file first (`.<name>.<tag>.tmp`: listings skip hidden names) and replace the old
    in one rename; on an object store (s3a://) the object is replaced as a whole when the new one is complete (S3 PUT
    semantics)."""
    if urlparse(location).scheme in ("", "file"):
        _rewrite_local(Path(urlparse(location).path), change, tag)
        return
    path = spark._jvm.org.apache.hadoop.fs.Path(location)
    file_system = _file_system(spark, location)
    stream = file_system.open(path)
    try:
        data = bytes(spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()
    out = file_system.create(path, True)
    try:
        out.write(bytearray(change(data)))
    finally:
        out.close()


def _rewrite_local(path: Path, change: Callable[[bytes], bytes], tag: str) -> None:
    changed = change(path.read_bytes())
    temporary = path.with_name(f".{path.name}.{tag}.tmp")
    try:
        with open(temporary, "wb") as out:
            out.write(changed)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _delta(spark: SparkSession, settings: Settings, table: str) -> DeltaTable:
    return DeltaTable.forPath(spark, tables.table_path(settings, table))


def _file_system(spark: SparkSession, location: str) -> Any:
    return spark._jvm.org.apache.hadoop.fs.Path(location).getFileSystem(_hadoop_conf(spark))


def _hadoop_conf(spark: SparkSession) -> Any:
    return spark.sparkContext._jsc.hadoopConfiguration()


def _truncate_log(spark: SparkSession, settings: Settings, table: str) -> None:
    """Checkpoints the latest version, then deletes the log's commits, checksums and checkpoints before it (Delta's
    own clean-up keeps them for `delta.logRetentionDuration`, 30 days, and never those of the current day)."""
    log = _delta_log(spark, settings, table)
    snapshot = _latest(spark, log)
    log.checkpoint(snapshot, getattr(log, "checkpoint$default$2")())
    folder = tables.table_path(settings, table) + "/_delta_log"
    file_system = _file_system(spark, folder)
    for status in file_system.listStatus(spark._jvm.org.apache.hadoop.fs.Path(folder)):
        entry = _LOG_ENTRY.match(status.getPath().getName())
        if entry and int(entry[1]) < snapshot.version():
            file_system.delete(status.getPath(), False)


def _delta_log(spark: SparkSession, settings: Settings, table: str) -> Any:
    """Delta's own (JVM) handle on the table's log: what its public API does not expose (files, tombstones,
    checkpoints)."""
    return spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
        spark._jsparkSession, tables.table_path(settings, table)
    )


def _snapshot(spark: SparkSession, settings: Settings, table: str) -> Any:
    return _latest(spark, _delta_log(spark, settings, table))


def _latest(spark: SparkSession, log: Any) -> Any:
    """The log's snapshot of the table's latest version (read from storage now, not the one cached)."""
    none = spark._jvm.scala.Option.empty()
    return log.update(False, none, none)


@contextmanager
def _console_to_log(spark: SparkSession) -> Iterator[None]:
    """Sends what the JVM prints with Scala's println (VACUUM's "Deleted N files…") to its stderr, Spark's log file,
    instead of this command's stdout, which holds the one summary line. Scala keeps that stream per thread."""
    console = getattr(spark._jvm.scala, "Console$").__getattr__("MODULE$")
    saved = console.out()
    console.setOutDirect(spark._jvm.System.err)
    try:
        yield
    finally:
        console.setOutDirect(saved)


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
