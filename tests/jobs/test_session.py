"""The Spark settings of a lakehouse job: one dict for the session builder and spark-submit, Delta jars included."""

from __future__ import annotations

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from lakehouse.config import load_settings
from lakehouse.session import delta_package, hadoop_aws_package, spark_conf
from tests.conftest import CONF


def test_delta_jars_are_those_delta_asks_for() -> None:
    asked = configure_spark_with_delta_pip(SparkSession.Builder())._options["spark.jars.packages"]
    assert delta_package() == asked


def test_conf_carries_the_settings_and_adds_packages_to_the_delta_jars() -> None:
    extra = "{spark.jars.packages: 'org.apache.hadoop:hadoop-aws:3.4.1', spark.sql.shuffle.partitions: '3'}"
    conf = spark_conf(load_settings(CONF, {"LAKEHOUSE__SPARK__CONF": extra, "LAKEHOUSE__SPARK__DRIVER_MEMORY": "3g"}))
    assert conf["spark.jars.packages"] == f"{delta_package()},org.apache.hadoop:hadoop-aws:3.4.1"
    assert (conf["spark.driver.memory"], conf["spark.sql.shuffle.partitions"]) == ("3g", "3")
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.log.level"] == "WARN"


def test_s3a_jars_and_settings_come_only_with_a_lake_on_s3(spark: SparkSession) -> None:
    local = spark_conf(load_settings(CONF, {}))
    assert local["spark.jars.packages"] == delta_package()
    assert not [key for key in local if key.startswith("spark.hadoop.fs.s3a.")]
    on_s3 = {"LAKEHOUSE__LAKE__ROOT": "s3a://bucket/lake", "LAKEHOUSE__S3__ENDPOINT": "http://127.0.0.1:9000",
             "LAKEHOUSE__S3__PATH_STYLE_ACCESS": "true"}  # fmt: skip
    conf = spark_conf(load_settings(CONF, on_s3))
    assert conf["spark.jars.packages"] == f"{delta_package()},{hadoop_aws_package()}"
    # S3A must be of the very Hadoop version Spark runs.
    running = spark.sparkContext._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    assert hadoop_aws_package() == f"org.apache.hadoop:hadoop-aws:{running}"
    assert {key: value for key, value in conf.items() if key.startswith("spark.hadoop.fs.s3a.")} == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }
    keys = {"LAKEHOUSE__S3__ACCESS_KEY": "key", "LAKEHOUSE__S3__SECRET_KEY": "secret"}
    conf = spark_conf(load_settings(CONF, {**on_s3, **keys}))
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == ("key", "secret")
