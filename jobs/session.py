"""The one Spark session builder: Delta Lake enabled, UTC, sized from conf/."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from lakehouse.config import Settings

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


# Defaults conf/ may override. Delta replays a table's log with 50 tasks by default, which dominates every small
# read (the ingest's state tables): a few tasks suffice with checkpoints.
_DEFAULTS = {
    "spark.databricks.delta.snapshotPartitions": "4",
}


def spark_session(settings: Settings) -> SparkSession:
    """The process-wide Spark session for `settings` (created on first use)."""
    spark_conf = settings.spark
    builder = (
        SparkSession.builder.master(spark_conf.master)
        .appName(spark_conf.app_name)
        .config("spark.driver.memory", spark_conf.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark_conf.shuffle_partitions))
        .config("spark.jars.ivy", os.path.abspath(spark_conf.ivy_cache))
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in {**_DEFAULTS, **spark_conf.conf, **_FIXED}.items():
        builder = builder.config(key, value)
    with _jvm_output_to(spark_conf.log_file):
        spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel(spark_conf.log_level)
    return spark


@contextmanager
def _jvm_output_to(log_file: str) -> Iterator[None]:
    """Sends the output of the JVM started meanwhile (Ivy reports, Spark's log) to `log_file` instead of our stderr,
    so a command's own output stays readable. An empty `log_file` leaves it on stderr."""
    if not log_file:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
