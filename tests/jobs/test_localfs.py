"""NioLocalFileSystem: the session's file: paths go through it, and what it writes is what Hadoop's own local file
system writes (permissions and checksums included), without a `chmod` process per file."""

from __future__ import annotations

import stat
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import load_settings
from lakehouse.localfs import FS_CLASS, local_fs_jar
from lakehouse.session import spark_conf
from tests.conftest import CONF, REPO


def test_the_session_writes_local_files_through_it(spark: SparkSession, tmp_path: Path) -> None:
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    local = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), hadoop_conf)
    assert local.getClass().getName() == FS_CLASS
    ours = tmp_path / "ours"
    spark.range(10).coalesce(1).withColumn("part", F.col("id") % 2).write.partitionBy("part").parquet(ours.as_uri())
    # One file created through ours and one through a stock LocalFileSystem (what Spark used before): same modes.
    stock = jvm.org.apache.hadoop.fs.LocalFileSystem()
    stock.initialize(jvm.java.net.URI("file:///"), hadoop_conf)
    for name, fs in (("ours.txt", local), ("stock.txt", stock)):
        out = fs.create(jvm.org.apache.hadoop.fs.Path((tmp_path / "made" / name).as_uri()))
        out.write(b"x")
        out.close()
    assert _modes(tmp_path / "made", "ours.txt") == _modes(tmp_path / "made", "stock.txt")
    assert spark.read.parquet(ours.as_uri()).count() == 10
    files = list(ours.rglob("*.parquet"))
    assert len(files) == 2 and all((p.parent / f".{p.name}.crc").exists() for p in files)
    umask = 0o022  # Hadoop's default fs.permissions.umask-mode
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}
    assert {stat.S_IMODE(p.parent.stat().st_mode) for p in files} == {0o777 & ~umask}


def test_only_a_local_lake_on_a_local_driver_gets_it() -> None:
    cache = {"LAKEHOUSE__SPARK__IVY_CACHE": str(REPO / ".cache" / "ivy")}
    local = spark_conf(load_settings(CONF, cache))
    assert local["spark.hadoop.fs.file.impl"] == FS_CLASS
    assert Path(local["spark.driver.extraClassPath"]) == local_fs_jar(REPO / ".cache" / "ivy")
    on_s3 = spark_conf(load_settings(CONF, {**cache, "LAKEHOUSE__LAKE__ROOT": "s3a://bucket/lake"}))
    on_cluster = spark_conf(load_settings(CONF, {**cache, "LAKEHOUSE__SPARK__MASTER": "spark://master:7077"}))
    for conf in (on_s3, on_cluster):
        assert "spark.hadoop.fs.file.impl" not in conf and "spark.driver.extraClassPath" not in conf


def test_the_jar_is_built_once_per_source_and_hadoop(tmp_path: Path) -> None:
    first = local_fs_jar(tmp_path)
    assert first is not None and first.is_file()
    built_at = first.stat().st_mtime_ns
    assert local_fs_jar(tmp_path) == first and first.stat().st_mtime_ns == built_at
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no leftover of the build


def _modes(folder: Path, name: str) -> tuple[int, int]:
    return stat.S_IMODE((folder / name).stat().st_mode), stat.S_IMODE((folder / f".{name}.crc").stat().st_mode)
