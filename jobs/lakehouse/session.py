"""The one Spark session builder: Delta Lake enabled, UTC, sized from conf/."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import pyspark
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.localfs import hadoop_client_api_jar, local_fs_conf

# Settings the pipeline's semantics depend on; conf/ cannot change them.
_FIXED = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Event dates and hours are UTC by contract.
    "spark.sql.session.timeZone": "UTC",
    # Quarantined non-UTF-8 lines are stored as one base64 string, without MIME line breaks.
    "spark.sql.chunkBase64String.enabled": "false",
    # Like most JSON parsers, the last of repeated keys wins rather than rejecting the line.
    "spark.sql.variant.allowDuplicateKeys": "true",
    "spark.sql.sources.partitionOverwriteMode": "static",
}


# Defaults conf/ may override (README, "Configuration" and "How aggregates work", has the measurements):
# - Delta replays a table's log with 50 tasks by default, which dominates every small read (the state tables);
# - a file's opening counted as 128 KiB of reading rather than 4 MB, so a scan of many small `events` files gets one
#   task per core rather than hundreds;
# - Parquet pages of at most 2,000 rows (Parquet's default: 20,000), so readers skip pages of a sorted file by the
#   page index.
_DEFAULTS = {
    "spark.databricks.delta.snapshotPartitions": "4",
    "spark.sql.files.openCostInBytes": str(128 * 1024),
    "spark.hadoop.parquet.page.row.count.limit": "2000",
}

# Where a JVM that exited while starting says why, first match wins: (pattern, the line holding the cause relative to
# the matching one). spark-submit's own failure (a package Ivy could not resolve or download, a bad setting) is an
# exception whose message is the cause; the JVM refusing an option (a heap size) says why around its standard words.
_START_FAILURES = (
    (re.compile(r'^Exception in thread "[^"]*" [\w.$]+: \[?(?P<cause>.*?)\]?$'), 0),
    (re.compile(r"^Error: Could not create the Java Virtual Machine\.$"), -1),
    (re.compile(r"^Error occurred during initialization of VM$"), 1),
    (re.compile(r"unresolved dependency|download failed|Error:|Exception"), 0),
)


def spark_session(settings: Settings) -> SparkSession:
    """The process-wide Spark session for `settings` (created on first use); a JVM that exits while starting, or a
    context that refuses the settings, as a LakehouseError saying why (and where the JVM's output went)."""
    builder = SparkSession.builder.master(settings.spark.master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    log_file = settings.spark.log_file
    written = os.path.getsize(log_file) if log_file and os.path.isfile(log_file) else 0
    try:
        with _jvm_output_to(log_file):
            return builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if exc.getCondition() != "JAVA_GATEWAY_EXITED":
            raise
        if not log_file:
            raise LakehouseError("Spark could not start: its JVM exited, saying why above") from None
        raise LakehouseError(f"Spark could not start: {_start_failure(log_file, written)} (see {log_file})") from None
    except Py4JJavaError as exc:  # the JVM runs, the context refused a setting (a value out of range, say)
        cause = re.sub(r"^[\w.$]+: ", "", str(exc.java_exception).strip().split("\n")[0])[:300]
        raise LakehouseError(f"Spark could not start: {cause}" + (f" (see {log_file})" if log_file else "")) from None


def _start_failure(log_file: str, offset: int) -> str:
    """Why the JVM that wrote `log_file` from `offset` on exited while starting, in one line of its output."""
    with open(log_file, "rb") as log:
        log.seek(offset)
        lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
    for pattern, shift in _START_FAILURES:
        for number, line in enumerate(lines):
            found = pattern.search(line)
            if found and 0 <= number + shift < len(lines):
                return (found.groupdict().get("cause") or lines[number + shift])[:300]
    return lines[-1][:300] if lines else "its JVM exited without a word"


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting of a lakehouse job but the master, the Delta jars included: the one source for this
    builder and for spark-submit (dags/), where the JVM starts before any builder runs."""
    spark = settings.spark
    on_s3 = urlparse(tables.lake_root(settings)).scheme == "s3a"
    # A local lake with a local driver: file: paths through NioLocalFileSystem (lakehouse.localfs); on a cluster the
    # executors would need the jar too, and a lake there is on shared storage anyway.
    fast_local = not on_s3 and spark.master.startswith("local")
    # The S3A jars only for a lake on S3: their AWS SDK bundle is a 640 MB download that a local lake never needs.
    s3_packages = [hadoop_aws_package()] if on_s3 else []
    packages = [delta_package(), *s3_packages, *filter(None, [spark.conf.get("spark.jars.packages")])]
    return {
        "spark.app.name": spark.app_name,
        "spark.driver.memory": spark.driver_memory,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.jars.ivy": os.path.abspath(spark.ivy_cache),
        "spark.ui.showConsoleProgress": "false",
        # Applied as the context starts, so a spark-submit job's log (the Airflow task's) is quiet from there on too.
        "spark.log.level": spark.log_level,
        **_DEFAULTS,
        **(s3a_conf(settings) if on_s3 else {}),
        **(local_fs_conf(spark.ivy_cache) if fast_local else {}),
        **spark.conf,
        **_FIXED,
        "spark.jars.packages": ",".join(packages),
    }


def delta_package() -> str:
    """The Maven coordinate of the Delta jars matching the installed delta-spark and pyspark, named as
    `delta.configure_spark_with_delta_pip` names it (Spark's major.minor and Scala 2.13 in the artifact)."""
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def hadoop_aws_package() -> str:
    """The Maven coordinate of hadoop-aws (Hadoop's S3A file system) of exactly the Hadoop version pyspark bundles,
    which S3A requires; its own dependencies bring the AWS SDK it was built against."""
    hadoop = hadoop_client_api_jar().name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    return f"org.apache.hadoop:hadoop-aws:{hadoop}"


def s3a_conf(settings: Settings) -> dict[str, str]:
    """The `s3:` settings as S3A's; without keys, S3A takes its default credential chain (AWS environment variables,
    instance profile)."""
    # An endpoint is a URL with its scheme: S3A then speaks plain HTTP to an http:// one, without fs.s3a.connection.ssl.
    s3a = "spark.hadoop.fs.s3a."
    return settings.s3.as_properties(
        f"{s3a}endpoint.region", f"{s3a}endpoint", (f"{s3a}access.key", f"{s3a}secret.key"), f"{s3a}path.style.access"
    )


@contextmanager
def _jvm_output_to(log_file: str) -> Iterator[None]:
    """Sends the output of the JVM started meanwhile (Ivy reports, Spark's log; what the JVM itself says when it
    cannot start, on its stdout) to `log_file` instead of our stdout and stderr, so a command's own output stays
    readable. An empty `log_file` leaves it where it was."""
    if not log_file:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(log_file, "ab") as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
    try:
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
