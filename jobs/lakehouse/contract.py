"""The event contract (DESIGN §1) as one Spark pass: each line gets its first failing reason or its parsed event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import IngestSettings

TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
BOM = "\ufeff"
# Whitespace a blank line may hold (a BOM too): such lines are skipped, not counted.
BLANK = " \t\n\r\x0b\x0c" + BOM
# The required paths, in the order the contract checks them, and what a well-typed value there is.
OBJECTS = ("data", "data.attributes", "meta")
SCALARS = {"data.id": "_id", "data.type": "_type", "meta.created_at": "_created"}
ORDER = ("data", "data.id", "data.type", "data.attributes", "meta", "meta.created_at")


@dataclass(frozen=True)
class Rules:
    """What the contract checks, and where the derived columns are read from."""

    max_line_bytes: int
    min_created_ms: int
    max_created_ms: int
    user_id_paths: tuple[str, ...]
    country_paths: tuple[str, ...]

    @classmethod
    def for_batch(cls, settings: IngestSettings, batch_start: datetime) -> Rules:
        """The rules of one batch: the time window is anchored at the batch start, so a re-run judges alike."""
        return cls(
            max_line_bytes=settings.max_line_bytes,
            min_created_ms=int(settings.min_event_time.timestamp() * 1000),
            max_created_ms=int(batch_start.timestamp() * 1000) + settings.max_future_seconds * 1000,
            user_id_paths=settings.user_id_paths,
            country_paths=settings.country_paths,
        )


def classify(lines: DataFrame, rules: Rules) -> DataFrame:
    """Lines (`value` as read, plus any passthrough columns) → non-blank lines with `reason` (null when valid),
    `raw` (of rejected lines: the line, base64 when not UTF-8; at most its first `max_line_bytes` characters, bytes
    when not UTF-8, so a `too_large` line is kept as a prefix) and the parsed event columns (of valid lines)."""
    value = F.col("value")
    text = without_bom(value)
    parsed = (
        lines.withColumn("_utf8", F.expr("is_valid_utf8(value)"))
        .where(~F.col("_utf8") | (F.btrim(value, F.lit(BLANK)) != ""))
        .withColumn("_size_ok", F.octet_length("value") <= rules.max_line_bytes)
        .withColumn("_v", F.when(F.col("_utf8") & F.col("_size_ok"), one_json_value(text)))
    )
    # Each required value is looked up once; the checks and the output columns reuse it.
    located = parsed.select(
        "*",
        *[_is_object(path).alias(_object_flag(path)) for path in ("$", *OBJECTS)],
        *[_get(path).alias(name) for path, name in SCALARS.items()],
    )
    with_reason = located.withColumn("reason", _first_failure(rules))
    valid = F.col("reason").isNull()
    return with_reason.select(
        *[c for c in lines.columns if c != "value"],
        "reason",
        F.when(~valid, _prefix(value, rules.max_line_bytes)).alias("raw"),
        F.when(valid, _scalar("_id", "string")).alias("event_id"),
        F.when(valid, _scalar("_type", "string")).alias("event_type"),
        F.when(valid, F.timestamp_millis(_scalar("_created", "bigint"))).alias("event_ts"),
        F.when(valid, first_string(F.col("_v"), rules.user_id_paths)).alias("user_id"),
        F.when(valid, first_string(F.col("_v"), rules.country_paths)).alias("country"),
        F.when(valid, _get("meta.service", "string")).alias("service"),
        F.when(valid, F.to_json(_get("data.attributes"))).alias("attributes"),
        F.when(valid, F.to_json(_get("meta"))).alias("meta"),
    )


def _prefix(value: Column, length: int) -> Column:
    """The first `length` characters of a UTF-8 line, else base64 of its first `length` bytes."""
    as_bytes = F.base64(F.substring(value.cast("binary"), 1, length))
    return F.when(F.col("_utf8"), F.substring(value, 1, length)).otherwise(as_bytes)


def one_json_value(text: Column) -> Column:
    """The JSON value of `text` (a variant), or null unless `text` is exactly one JSON value (RFC 8259), whitespace
    around it allowed: a second value, a stray bracket, a comment or any other trailing content makes it malformed."""
    # Spark's parser stops after the first value and ignores what follows. Inside `[text\n]` that rest must be a
    # closing bracket (the list would not parse otherwise), which closes the list early: then `{"":text\n}`, where a
    # closing bracket cannot follow the value, tells. A list of one element whose text holds no `]` needs no second
    # parse.
    listed = F.try_parse_json(F.concat(F.lit("["), text, F.lit("\n]")))
    as_member = F.try_parse_json(F.concat(F.lit('{"":'), text, F.lit("\n}")))
    alone = F.try_variant_get(listed, "$[1]", "variant").isNull() & (
        ~F.contains(text, F.lit("]")) | as_member.isNotNull()
    )
    return F.when(alone, F.try_variant_get(listed, "$[0]", "variant"))


def without_bom(line: Column) -> Column:
    """The line's text without a leading UTF-8 byte-order mark."""
    return F.when(F.startswith(line, F.lit(BOM)), F.substring(line, 2, 1 << 30)).otherwise(line)


def first_string(parsed: Column, paths: tuple[str, ...]) -> Column:
    """The first non-null value at `paths` of the parsed line (a variant), as a string: how `user_id` and `country`
    are derived."""
    return F.coalesce(*[F.try_variant_get(parsed, _json_path(path), "string") for path in paths])


def _first_failure(rules: Rules) -> Column:
    """The reason of the first rule the line breaks, in the contract's order; null when it breaks none.
    A valid line only pays for the cheap well-typed checks: missing-or-bad is told apart on failure only."""
    well_typed = {path: F.col(_object_flag(path)) for path in OBJECTS}
    well_typed["data.id"] = (_kind("_id") == "STRING") & (F.length(_scalar("_id", "string")) > 0)
    well_typed["data.type"] = (_kind("_type") == "STRING") & _scalar("_type", "string").rlike(TYPE_PATTERN)
    well_typed["meta.created_at"] = (_kind("_created") == "BIGINT") | _is_huge_integer("_created", "meta.created_at")
    reason = (
        F.when(~F.col("_utf8"), "not_utf8")
        .when(~F.col("_size_ok"), "too_large")
        .when(F.col("_v").isNull(), "malformed_json")
        .when(~F.col(_object_flag("$")), "not_an_object")
    )
    for path in ORDER:
        value = F.col(SCALARS[path]) if path in SCALARS else _get(path)
        missing = value.isNull() | F.is_variant_null(value)
        failed = ~F.coalesce(well_typed[path], F.lit(False))
        reason = reason.when(failed, F.when(missing, f"missing:{path}").otherwise(f"bad_type:{path}"))
    within = _scalar("_created", "bigint").between(rules.min_created_ms, rules.max_created_ms)
    # Integers beyond 64 bits read as null: out of range too.
    return reason.when(~F.coalesce(within, F.lit(False)), "out_of_range:meta.created_at")


def _get(path: str, type_name: str = "variant") -> Column:
    """The value at dotted `path` of the parsed line, or null when absent or not castable to `type_name`."""
    return F.try_variant_get(F.col("_v"), _json_path(path), type_name)


def _scalar(column: str, type_name: str) -> Column:
    return F.try_variant_get(F.col(column), "$", type_name)


def _json_path(path: str) -> str:
    return "$" if path == "$" else "$." + path


def _object_flag(path: str) -> str:
    return "_is_object_" + path.replace(".", "_").replace("$", "root")


def _kind(column: str) -> Column:
    """The JSON type of a looked-up value as Spark names it (STRING, BIGINT, DECIMAL(p,s), DOUBLE, BOOLEAN...)."""
    return F.schema_of_variant(F.col(column))


def _is_object(path: str) -> Column:
    # A cast to a struct succeeds only for JSON objects, and reads just the one named field.
    return F.coalesce(_get(path, "struct<_:variant>").isNotNull(), F.lit(False))


def _is_huge_integer(column: str, path: str) -> Column:
    """An integer literal beyond 64 bits: well typed (then out of range), unlike `1.0`, which parses alike."""
    literal = F.get_json_object(F.col("value").cast("string"), _json_path(path))
    whole_decimal = F.startswith(_kind(column), F.lit("DECIMAL(")) & F.endswith(_kind(column), F.lit(",0)"))
    return whole_decimal & ~literal.rlike("[.eE]")
