"""The Spark settings of a lakehouse job: one dict for the session builder and spark-submit, Delta jars included."""

from __future__ import annotations

from delta import configure_spark_with_delta_pip
from pyspark.sql import SparkSession

from lakehouse.config import load_settings
from lakehouse.session import delta_package, spark_conf
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
