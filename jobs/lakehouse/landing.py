"""The landing zone: which raw files are there, and their lines, numbered, with the file each came from."""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.errors import LakehouseError
from lakehouse.records import LandingFile
from lakehouse.storage import folder_exists, list_files

_GLOB_CHARS = re.compile(r"([\\{}\[\]*?])")


def list_landing(spark: SparkSession, landing: str, extensions: tuple[str, ...]) -> list[LandingFile]:
    """Every file under `landing` with one of `extensions`, sorted by path. Names starting with `_` or `.`
    (uploads in progress, marker files) are left alone."""
    if not folder_exists(spark, landing):
        raise LakehouseError(f"no landing folder at {landing}: land files there, or run `lakehouse generate --out`")
    found = [
        LandingFile(relative, location, uri, size, modified)
        for relative, location, uri, size, modified in list_files(spark, landing)
        if not _hidden(relative) and relative.endswith(extensions)
    ]
    return sorted(found, key=lambda f: f.path)


def unsettled(files: list[LandingFile], now_ms: int, settle_ms: int) -> list[LandingFile]:
    """The files modified less than `settle_ms` before `now_ms`: a producer may still be writing them."""
    return [f for f in files if f.modified is not None and now_ms - f.modified < settle_ms]


def changed(files: list[LandingFile], listed: list[LandingFile]) -> list[LandingFile]:
    """The `files` whose size or modification time differ in `listed` (a later listing); a file no longer listed has
    not changed what was read of it."""
    now = {f.path: f for f in listed}
    return [f for f in files if f.path in now and _differs(f, now[f.path])]


def _differs(then: LandingFile, now: LandingFile) -> bool:
    """Whether a file's size, or its modification time where both listings have one, changed."""
    timed = then.modified is not None and now.modified is not None
    return now.size != then.size or (timed and now.modified != then.modified)


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def read_lines(spark: SparkSession, files: list[LandingFile]) -> DataFrame:
    """The raw lines of `files` (gzip by file ending): `value` as read (bytes kept, even when not UTF-8),
    `source_file`, and where the line sits in what Spark read (`block_start`, `row_id`) for `number_lines`."""
    if not files:
        return spark.createDataFrame([], "value string, block_start long, row_id long, source_file string")
    raw = spark.read.text([_GLOB_CHARS.sub(r"\\\1", f.location) for f in files]).select(
        "value",
        F.col("_metadata.file_path").alias("_uri"),
        F.col("_metadata.file_block_start").alias("block_start"),
        F.monotonically_increasing_id().alias("row_id"),
    )
    names = spark.createDataFrame([(f.uri, f.path) for f in files], "_uri string, _path string")
    # A left join with a fallback, so that a name spelled differently can never drop a line.
    return (
        raw.join(F.broadcast(names), "_uri", "left")
        .withColumn("source_file", F.coalesce("_path", "_uri"))
        .drop("_uri", "_path")
    )


def number_lines(lines: DataFrame) -> DataFrame:
    """Adds `line_number` (1-based, blank lines included) from where each line sits in what Spark read.

    Spark may read one file in several splits, in any order, and pack several splits in one partition; within a
    split, row ids are consecutive. So a line's number is the lines of the file's earlier splits plus its place in
    its own split, computed from one small row per split rather than by sorting every line.
    """
    per_split = lines.groupBy("source_file", "block_start").agg(
        F.min("row_id").alias("_first_row"), F.count(F.lit(1)).alias("_lines")
    )
    earlier = Window.partitionBy("source_file").orderBy("block_start").rowsBetween(Window.unboundedPreceding, -1)
    offsets = per_split.withColumn("_offset", F.coalesce(F.sum("_lines").over(earlier), F.lit(0)))
    return (
        lines.join(F.broadcast(offsets.drop("_lines")), ["source_file", "block_start"])
        .withColumn("line_number", F.col("_offset") + F.col("row_id") - F.col("_first_row") + 1)
        .drop("_offset", "_first_row", "block_start", "row_id")
    )
