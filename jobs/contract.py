"""The event contract (DESIGN §1) as one Spark pass: each line gets its first failing reason or its parsed event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.config import IngestSettings

TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
BOM = "\ufeff"


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
    `raw` (the line, base64 when not UTF-8) and the parsed event columns (null when not valid)."""
    text = F.regexp_replace(F.col("value"), "^" + BOM, "")
    parsed = (
        lines.withColumn("_utf8", F.expr("is_valid_utf8(value)"))
        .where(~F.col("_utf8") | ~text.rlike(r"^\s*$"))
        .withColumn("_size_ok", F.octet_length("value") <= rules.max_line_bytes)
        .withColumn("_v", F.when(F.col("_utf8") & F.col("_size_ok"), F.try_parse_json(text)))
    )
    with_reason = parsed.withColumn("reason", _first_failure(rules))
    valid = F.col("reason").isNull()
    created_ms = _get("meta.created_at", "bigint")
    return with_reason.select(
        *[c for c in lines.columns if c != "value"],
        "reason",
        F.when(F.col("_utf8"), F.col("value")).otherwise(F.base64(F.col("value").cast("binary"))).alias("raw"),
        F.when(valid, _get("data.id", "string")).alias("event_id"),
        F.when(valid, _get("data.type", "string")).alias("event_type"),
        F.when(valid, F.timestamp_millis(created_ms)).alias("event_ts"),
        F.when(valid, _first_string(rules.user_id_paths)).alias("user_id"),
        F.when(valid, _first_string(rules.country_paths)).alias("country"),
        F.when(valid, _get("meta.service", "string")).alias("service"),
        F.when(valid, F.to_json(_get("data.attributes"))).alias("attributes"),
        F.when(valid, F.to_json(_get("meta"))).alias("meta"),
    )


def _first_failure(rules: Rules) -> Column:
    """The reason of the first rule the line breaks, in the contract's order; null when it breaks none."""
    created = "meta.created_at"
    checks = [
        (~F.col("_utf8"), F.lit("not_utf8")),
        (~F.col("_size_ok"), F.lit("too_large")),
        (F.col("_v").isNull(), F.lit("malformed_json")),
        (~_is_object("$"), F.lit("not_an_object")),
        *_required("data", _is_object("data")),
        *_required("data.id", (_kind("data.id") == "STRING") & (F.length(_get("data.id", "string")) > 0)),
        *_required("data.type", (_kind("data.type") == "STRING") & _get("data.type", "string").rlike(TYPE_PATTERN)),
        *_required("data.attributes", _is_object("data.attributes")),
        *_required("meta", _is_object("meta")),
        *_required(created, (_kind(created) == "BIGINT") | _is_huge_integer(created)),
        (~_within(_get(created, "bigint"), rules), F.lit(f"out_of_range:{created}")),
    ]
    reason = F.when(checks[0][0], checks[0][1])
    for failed, code in checks[1:]:
        reason = reason.when(failed, code)
    return reason


def _within(created_ms: Column, rules: Rules) -> Column:
    # Integers beyond 64 bits read as null: out of range too.
    return F.coalesce(created_ms.between(rules.min_created_ms, rules.max_created_ms), F.lit(False))


def _required(path: str, well_typed: Column) -> list[tuple[Column, Column]]:
    """`missing:` when absent or JSON null, else `bad_type:` unless `well_typed` (only evaluated when present)."""
    value = _get(path)
    return [
        (value.isNull() | F.is_variant_null(value), F.lit(f"missing:{path}")),
        (~well_typed, F.lit(f"bad_type:{path}")),
    ]


def _get(path: str, type_name: str = "variant") -> Column:
    """The value at dotted `path` of the parsed line, or null when absent or not castable to `type_name`."""
    return F.try_variant_get(F.col("_v"), _json_path(path), type_name)


def _json_path(path: str) -> str:
    return "$" if path == "$" else "$." + path


def _kind(path: str) -> Column:
    """The JSON type at `path` as Spark names it (STRING, BIGINT, DECIMAL(p,s), DOUBLE, BOOLEAN...)."""
    return F.schema_of_variant(_get(path))


def _is_object(path: str) -> Column:
    # A cast to a struct succeeds only for JSON objects, and reads just the one named field.
    return F.coalesce(_get(path, "struct<_:variant>").isNotNull(), F.lit(False))


def _is_huge_integer(path: str) -> Column:
    """An integer literal beyond 64 bits: well typed (then out of range), unlike `1.0`, which parses alike."""
    literal = F.get_json_object(F.col("value").cast("string"), _json_path(path))
    whole_decimal = F.startswith(_kind(path), F.lit("DECIMAL(")) & F.endswith(_kind(path), F.lit(",0)"))
    return whole_decimal & ~literal.rlike("[.eE]")


def _first_string(paths: tuple[str, ...]) -> Column:
    return F.coalesce(*[_get(path, "string") for path in paths])
