"""The landing zone: listing, reading plain and gzip files with odd names, and numbering lines exactly."""

from __future__ import annotations

import gzip
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.landing import list_landing, number_lines, read_lines


def write_lines(path: Path, lines: list[str], compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(f"{text}\n" for text in lines).encode()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_lists_files_by_relative_path_and_skips_hidden_and_other_endings(
    spark: SparkSession, settings: Settings, landing: Path
) -> None:
    for name in ["b/x.json", "a/y.jsonl.gz", "a b/[z]+1.jsonl", "_tmp/q.json", "a/.part.json", "a/notes.txt"]:
        write_lines(landing / name, ["{}"])
    files = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
    assert [f.path for f in files] == ["a b/[z]+1.jsonl", "a/y.jsonl.gz", "b/x.json"]
    assert [f.size for f in files] == [len(b"{}\n")] * 3


def test_reads_every_line_with_its_file_and_number(spark: SparkSession, settings: Settings, landing: Path) -> None:
    write_lines(landing / "a b/[z]+1.jsonl", ["l1", "", "l3"])
    write_lines(landing / "g.json.gz", ["g1", "g2"], compress=True)
    (landing / "empty.json").write_bytes(b"")
    write_lines(landing / "crlf.json", ["c1\r", "c2\r"])
    files = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
    out = number_lines(read_lines(spark, files)).select("source_file", "line_number", "value")
    expected = spark.createDataFrame(
        [("a b/[z]+1.jsonl", 1, "l1"), ("a b/[z]+1.jsonl", 2, ""), ("a b/[z]+1.jsonl", 3, "l3"),
         ("g.json.gz", 1, "g1"), ("g.json.gz", 2, "g2"), ("crlf.json", 1, "c1"), ("crlf.json", 2, "c2")],
        "source_file string, line_number long, value string",
    )  # fmt: skip
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_numbers_lines_across_splits_read_out_of_order(spark: SparkSession) -> None:
    # Two splits of one file land in partitions in reverse order, and share a partition with another file.
    lines = spark.createDataFrame(
        [("f", 100, 0, "f-split2-a"), ("f", 100, 1, "f-split2-b"), ("g", 0, 2, "g-1"),
         ("f", 0, 2**33, "f-split1-a"), ("f", 0, 2**33 + 1, "f-split1-b"), ("f", 0, 2**33 + 2, "f-split1-c")],
        "source_file string, block_start long, row_id long, value string",
    )  # fmt: skip
    expected = spark.createDataFrame(
        [("f", "f-split1-a", 1), ("f", "f-split1-b", 2), ("f", "f-split1-c", 3), ("f", "f-split2-a", 4),
         ("f", "f-split2-b", 5), ("g", "g-1", 1)],
        "source_file string, value string, line_number long",
    )  # fmt: skip
    assert_df_equality(number_lines(lines), expected, ignore_row_order=True, ignore_nullable=True)


def test_large_file_read_in_several_splits_keeps_line_order(
    spark: SparkSession, settings: Settings, landing: Path
) -> None:
    write_lines(landing / "big.jsonl", [f"line-{n:06d}" for n in range(1, 40_001)])
    spark.conf.set("spark.sql.files.maxPartitionBytes", "65536")
    try:
        files = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
        frame = read_lines(spark, files)
        assert frame.rdd.getNumPartitions() > 4
        wrong = number_lines(frame).where("value != concat('line-', lpad(cast(line_number as string), 6, '0'))")
        assert wrong.count() == 0
        assert frame.count() == 40_000
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
