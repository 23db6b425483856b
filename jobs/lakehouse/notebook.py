"""The lake from a notebook: a Spark session configured as the jobs' (Delta jars, S3, conf/'s settings) with every
table as a view, for the data scientists' own queries and DataFrames.

    from lakehouse.notebook import open_lake
    spark = open_lake()                      # conf/local.yaml and LAKEHOUSE__… overrides, as the CLI reads them
    spark.sql("SELECT event_type, count(*) FROM events GROUP BY 1").show()
    spark.table("daily_user_activity").where("event_date >= date '2024-07-01'").toPandas()

Read-only by convention: write through the `lakehouse` commands, which keep ingest exactly once and the gates.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import DEFAULT_CONF, load_settings
from lakehouse.publish import PUBLISHED
from lakehouse.session import spark_session
from lakehouse.storage import read


def open_lake(conf: str | Path = DEFAULT_CONF) -> SparkSession:
    """The Spark session of the settings in `conf` (plus environment overrides), with a temporary view per lake
    table that exists (`events`, `quarantine`, `ingest_runs` and the gold tables: `daily_user_activity`,
    `daily_event_stats`, `monthly_user_activity`), each reading the table's latest version at query time."""
    settings = load_settings(conf)
    spark = spark_session(settings)
    for name in PUBLISHED:
        table = read(spark, settings, name)
        if table is not None:
            table.createOrReplaceTempView(name)
    return spark
