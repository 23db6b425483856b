"""The landing zone: which raw files are there, and their lines, numbered, with the file each came from; the scan
that bounds what reading them may cost (expanded size, line length)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.errors import LakehouseError
from lakehouse.records import LandingFile
from lakehouse.storage import folder_exists, list_files, open_read, open_write

_GLOB_CHARS = re.compile(r"([\\{}\[\]*?])")
# The scan reads a file in chunks of this many bytes (at least one more than ingest.max_line_bytes): a chunk without a
# line break marks a line that may be too long for Spark to hold, which then goes through `sanitized`.
SCAN_CHUNK = 8 * 1024 * 1024
# Deflate expands at most ~1032-fold: a smaller .gz cannot hold a chunk, nor pass the expanded-size limit.
DEFLATE_MAX_RATIO = 1032
COMPRESSED = (".gz", ".bz2", ".deflate", ".lz4", ".snappy", ".zst")
_MAX_INT = 2**31 - 1
_BOM = b"\xef\xbb\xbf"
# What Hadoop's line reader says of a line of 2 GiB or more.
_TOO_LONG_TO_COUNT = "Too many bytes before newline"
# The buffer of the line reader `sanitized` runs (Hadoop's default, io.file.buffer.size).
_LINE_BUFFER = 64 * 1024


def list_landing(spark: SparkSession, landing: str, extensions: tuple[str, ...]) -> list[LandingFile]:
    """Every file under `landing` with one of `extensions`, sorted by path. Names starting with `_` or `.`
    (uploads in progress, marker files) are left alone."""
    if not folder_exists(spark, landing):
        raise LakehouseError(f"no landing folder at {landing}: land files there, or run `lakehouse generate --out`")
    found = [
        LandingFile(relative, location, uri, size, modified)
        for relative, location, uri, size, modified in list_files(spark, landing)
        if ingestible(relative, extensions)
    ]
    return sorted(found, key=lambda f: f.path)


def ingestible(relative: str, extensions: tuple[str, ...]) -> bool:
    """Whether the landing file at `relative` is one to ingest: one of `extensions`, no part of its path hidden."""
    return not _hidden(relative) and relative.endswith(extensions)


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


def read_lines(spark: SparkSession, files: list[LandingFile], max_line_length: int | None = None) -> DataFrame:
    """The raw lines of `files` (gzip by file ending): `value` as read (bytes kept, even when not UTF-8),
    `source_file`, and where the line sits in what Spark read (`block_start`, `row_id`) for `number_lines`.
    With `max_line_length`, Hadoop's reader never holds a longer line: it drops it (see `read_guard`)."""
    if not files:
        return spark.createDataFrame([], "value string, block_start long, row_id long, source_file string")
    reader = spark.read
    if max_line_length is not None:
        reader = reader.option("mapreduce.input.linerecordreader.line.maxlength", str(max_line_length))
    raw = reader.text([_GLOB_CHARS.sub(r"\\\1", f.location) for f in files]).select(
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


@dataclasses.dataclass(frozen=True)
class Screened:
    """What `screen` found of a batch's files: those to read as a copy with their over-long lines cut (by path), and
    those set aside unread (by path: why)."""

    read_as: dict[str, LandingFile]
    set_aside: dict[str, str]


def screen(
    spark: SparkSession, files: list[LandingFile], max_line_bytes: int, max_expanded_bytes: int, staging: str
) -> Screened:
    """Scans the files that could expand beyond `max_expanded_bytes` or hold a line longer than a scan chunk, in
    chunks (bounded memory, stopping past the limit): one over the limit is set aside; one with a chunk without a line
    break is read as its `sanitized` copy under `staging`, so that Spark never holds a line longer than `read_guard`.
    A file that cannot be scanned is left to the read, which says why."""
    chunk = scan_chunk(max_line_bytes)
    read_as, set_aside = {}, {}
    too_large = f"expands to more than ingest.max_file_expanded_bytes ({max_expanded_bytes} bytes)"
    for number, landed in enumerate(files):
        if not landed.path.endswith(COMPRESSED) and landed.size > max_expanded_bytes:
            set_aside[landed.path] = too_large
            continue
        if not _may_exceed(landed, chunk, max_expanded_bytes):
            continue
        if (found := _scan(spark, landed, chunk, max_expanded_bytes)) is None:
            continue
        expanded, long_lines = found
        if expanded > max_expanded_bytes:
            set_aside[landed.path] = too_large
        elif long_lines:
            try:
                read_as[landed.path] = sanitized(spark, landed, max_line_bytes, f"{staging}/{number}.jsonl")
            except Py4JJavaError as exc:
                if _TOO_LONG_TO_COUNT not in str(exc):
                    raise
                set_aside[landed.path] = f"a line longer than Hadoop's line reader can count ({_TOO_LONG_TO_COUNT})"
    return Screened(read_as, set_aside)


def scan_chunk(max_line_bytes: int) -> int:
    """The bytes the scan reads at a time: SCAN_CHUNK, or more when a line may be longer."""
    return max(SCAN_CHUNK, max_line_bytes + 1)


def read_guard(max_line_bytes: int) -> int:
    """The longest line Hadoop's reader may hold (`mapreduce.input.linerecordreader.line.maxlength`; it drops a longer
    one): a line of two scan chunks holds a whole chunk without a line break, so no file read as landed has one."""
    return 2 * scan_chunk(max_line_bytes) + 4


def sanitized(spark: SparkSession, landed: LandingFile, max_line_bytes: int, target: str) -> LandingFile:
    """A copy of `landed` at `target` (uncompressed) with the same lines in the same order, each longer than
    `max_line_bytes` (a leading byte-order mark not counted) cut to a prefix (`_cut`) ending in a line feed, every
    other byte as landed: read in its place. Hadoop's own line reader finds the lines, one call per line, while a
    second stream copies the bytes between them JVM-side."""
    jvm = spark._jvm
    lines, source = open_read(spark, landed.location), open_read(spark, landed.location)
    out, location, uri = open_write(spark, target)
    copy = jvm.org.apache.commons.io.IOUtils
    try:
        reader, text = jvm.org.apache.hadoop.util.LineReader(lines, _LINE_BUFFER), jvm.org.apache.hadoop.io.Text()
        at = copied = 0
        while (consumed := reader.readLine(text, max_line_bytes + 8, _MAX_INT)) > 0:
            if consumed > max_line_bytes and (length := text.getLength()) > max_line_bytes:
                prefix = bytes(text.copyBytes())
                if length - (len(_BOM) if at == 0 and prefix.startswith(_BOM) else 0) > max_line_bytes:
                    copy.copyLarge(source, out, 0, at - copied)
                    out.write(_cut(prefix, max_line_bytes, at == 0, _valid_utf8(jvm, source, consumed)) + b"\n")
                    copied = at + consumed
            at += consumed
        copy.copyLarge(source, out)
    finally:
        out.close()
        source.close()
        lines.close()
    return dataclasses.replace(landed, location=location, uri=uri)


def _may_exceed(landed: LandingFile, chunk: int, max_expanded_bytes: int) -> bool:
    """Whether `landed` may expand beyond `max_expanded_bytes` or hold a chunk without a line break, by its size."""
    if not landed.path.endswith(COMPRESSED):
        return landed.size >= chunk
    return not landed.path.endswith(".gz") or landed.size * DEFLATE_MAX_RATIO >= min(chunk, max_expanded_bytes + 1)


def _scan(spark: SparkSession, landed: LandingFile, chunk: int, max_expanded_bytes: int) -> tuple[int, bool] | None:
    """The bytes `landed` expands to (counted up to one chunk past `max_expanded_bytes`) and whether a whole chunk of
    it holds no line break (JVM-side, a few calls per chunk); None when it cannot be read."""
    jvm = spark._jvm
    try:
        stream = open_read(spark, landed.location)
    except Py4JJavaError:
        return None
    try:
        # Latin-1 maps each byte to one character; the reader counts lines as Hadoop ends them (\n, \r\n, \r).
        reader = jvm.java.io.LineNumberReader(jvm.java.io.InputStreamReader(stream, "ISO-8859-1"), 1 << 16)
        expanded, lines, long_lines = 0, 0, False
        while expanded <= max_expanded_bytes:
            skipped = reader.skip(chunk)
            counted = reader.getLineNumber()
            long_lines |= skipped == chunk and counted == lines
            expanded, lines = expanded + skipped, counted
            if skipped < chunk:
                break
        return expanded, long_lines
    except Py4JJavaError:
        return None
    finally:
        stream.close()


def _valid_utf8(jvm: Any, stream: Any, length: int) -> bool:
    """Whether the next `length` bytes of `stream` are UTF-8, read through (JVM-side) either way."""
    bounded = jvm.org.apache.commons.io.input.BoundedInputStream(stream, length)
    try:
        jvm.java.io.InputStreamReader(bounded, jvm.java.nio.charset.StandardCharsets.UTF_8.newDecoder()).skip(length)
        return True
    except Py4JJavaError:
        return False
    finally:
        jvm.org.apache.commons.io.IOUtils.skip(bounded, length)


def _cut(prefix: bytes, max_line_bytes: int, first: bool, valid: bool) -> bytes:
    """The first bytes of an over-long line as its copy holds them: just over `max_line_bytes` (so it stays
    `too_large`), cut where a character starts; a 0xFF byte added when only the rest was not UTF-8 (so it stays
    `not_utf8`)."""
    keep = max_line_bytes + 1 + (len(_BOM) if first and prefix.startswith(_BOM) else 0)
    end = next((at for at in range(keep, len(prefix)) if prefix[at] & 0xC0 != 0x80), len(prefix))
    kept = prefix[:end]
    try:
        kept.decode("utf-8")
    except UnicodeDecodeError:
        return kept
    return kept if valid else kept + b"\xff"
