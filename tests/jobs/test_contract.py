"""The event contract: every reason code, in rule order, and the parsed columns of valid events."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from lakehouse.config import IngestSettings
from lakehouse.contract import Rules, classify
from tests.oracle import MAX_DEPTH, MAX_NUMBER_DIGITS, first_failure

BATCH_START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(BATCH_START.timestamp() * 1000)
RULES = Rules.for_batch(IngestSettings(max_line_bytes=400), BATCH_START)


def event(**changes: object) -> dict:
    """A valid event with `changes` applied: `data.id=None` sets JSON null, `data.id=...` (Ellipsis) removes it."""
    body = {
        "data": {"id": "e1", "type": "page_viewed", "attributes": {"user_id": "u1", "country": "DE"}},
        "meta": {"created_at": NOW_MS, "service": "web"},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = body
        for part in parents:
            target = target[part]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return body


def line(**changes: object) -> str:
    return json.dumps(event(**changes))


CASES = [
    (line(), None),
    (b"\xff\xfe" + line().encode(), "not_utf8"),
    (line(data__attributes={"pad": "x" * 400}), "too_large"),
    ('{"data": {"id": "e1"', "malformed_json"),
    ("{'data': 1}", "malformed_json"),
    ('{"a": 1,}', "malformed_json"),
    ("[1, 2]", "not_an_object"),
    ("null", "not_an_object"),
    ('"text"', "not_an_object"),
    ("42", "not_an_object"),
    (line(data=...), "missing:data"),
    (line(data=None), "missing:data"),
    (line(data=[1]), "bad_type:data"),
    (line(data__id=...), "missing:data.id"),
    (line(data__id=None), "missing:data.id"),
    (line(data__id=7), "bad_type:data.id"),
    (line(data__id=""), "bad_type:data.id"),
    (line(data__type=...), "missing:data.type"),
    (line(data__type="page viewed"), "bad_type:data.type"),
    (line(data__type="t" * 129), "bad_type:data.type"),
    (line(data__type=3), "bad_type:data.type"),
    (line(data__attributes=...), "missing:data.attributes"),
    (line(data__attributes=[]), "bad_type:data.attributes"),
    (line(data__attributes="x"), "bad_type:data.attributes"),
    (line(meta=...), "missing:meta"),
    (line(meta="web"), "bad_type:meta"),
    (line(meta__created_at=...), "missing:meta.created_at"),
    (line(meta__created_at=None), "missing:meta.created_at"),
    (line(meta__created_at=str(NOW_MS)), "bad_type:meta.created_at"),
    (line(meta__created_at=True), "bad_type:meta.created_at"),
    (line(meta__created_at=NOW_MS + 0.5), "bad_type:meta.created_at"),
    (line().replace(str(NOW_MS), f"{NOW_MS}.0"), "bad_type:meta.created_at"),
    (line().replace(str(NOW_MS), "1.7e12"), "bad_type:meta.created_at"),
    (line(meta__created_at=946_684_799_999), "out_of_range:meta.created_at"),
    (line(meta__created_at=NOW_MS + 86_400_001), "out_of_range:meta.created_at"),
    (line(meta__created_at=10**20), "out_of_range:meta.created_at"),
    (line(meta__created_at=946_684_800_000), None),
    (line(meta__created_at=NOW_MS + 86_400_000), None),
    # A line is exactly one JSON value: anything but whitespace after it is malformed (DESIGN §1).
    (line() + " xyz", "malformed_json"),
    (line() + "]", "malformed_json"),
    (line() + "}", "malformed_json"),
    (line() + "/**/", "malformed_json"),
    (line() + " 1", "malformed_json"),
    (line() + line(data__id="e2"), "malformed_json"),
    (line() + ",", "malformed_json"),
    (line() + ', "k": 1', "malformed_json"),
    (line() + "]}", "malformed_json"),
    (line() + " \t ", None),
    # The first failing rule wins: data.id is checked before meta.
    (line(data__id=None, meta=...), "missing:data.id"),
    (line(data__type="bad type", meta__created_at="x"), "bad_type:data.type"),
]


def lines_frame(spark: SparkSession, lines: list[str | bytes]):
    # Raw bytes, as the text reader gives them: invalid UTF-8 survives into the string column.
    rows = [(value if isinstance(value, bytes) else value.encode(), n) for n, value in enumerate(lines, 1)]
    return spark.createDataFrame(rows, "value binary, line_number long").selectExpr(
        "cast(value as string) as value", "line_number"
    )


def test_every_rule_gives_its_reason_in_order(spark: SparkSession) -> None:
    out = classify(lines_frame(spark, [case for case, _ in CASES]), RULES)
    expected = spark.createDataFrame(
        [(n, reason) for n, (_, reason) in enumerate(CASES, 1)], "line_number long, reason string"
    )
    assert_df_equality(out.select("line_number", "reason"), expected, ignore_row_order=True, ignore_nullable=True)


def test_valid_event_columns(spark: SparkSession) -> None:
    lines = [
        line(data__attributes={"user_id": "u1", "country": "DE", "n": [1, {"b": True}]}),
        "\ufeff" + line(data__id="e2", data__attributes={}, meta__user_id="u2", meta__country="FR"),
        line(data__id="e3", data__attributes={"user_id": 5}, meta={"created_at": NOW_MS}),
    ]
    out = classify(lines_frame(spark, lines), RULES).select(
        "line_number", "event_id", "event_type", "event_ts", "user_id", "country", "service", "attributes", "meta"
    )
    ts = datetime(2024, 3, 1, 12, 0)
    expected = spark.createDataFrame(
        [
            (
                1,
                "e1",
                "page_viewed",
                ts,
                "u1",
                "DE",
                "web",
                '{"country":"DE","n":[1,{"b":true}],"user_id":"u1"}',
                f'{{"created_at":{NOW_MS},"service":"web"}}',
            ),
            (
                2,
                "e2",
                "page_viewed",
                ts,
                "u2",
                "FR",
                "web",
                "{}",
                f'{{"country":"FR","created_at":{NOW_MS},"service":"web","user_id":"u2"}}',
            ),
            (3, "e3", "page_viewed", ts, "5", None, None, '{"user_id":5}', f'{{"created_at":{NOW_MS}}}'),
        ],  # fmt: skip
        "line_number long, event_id string, event_type string, event_ts timestamp, user_id string, country string, "
        "service string, attributes string, meta string",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_blank_lines_are_skipped_and_raw_keeps_bad_bytes(spark: SparkSession) -> None:
    out = classify(lines_frame(spark, ["", "   \t", "\ufeff", b"\xc3\x28{}", "{x"]), RULES)
    rows = {r["line_number"]: (r["reason"], r["raw"]) for r in out.collect()}
    assert rows == {4: ("not_utf8", "wyh7fQ=="), 5: ("malformed_json", "{x")}


@pytest.mark.parametrize(
    ("paths", "expected"),
    [(("meta.user_id", "data.attributes.user_id"), "m"), (("data.attributes.user_id",), "a"), (("meta.nope",), None)],
)
def test_user_id_paths_are_configurable(spark: SparkSession, paths: tuple[str, ...], expected: str | None) -> None:
    rules = Rules.for_batch(IngestSettings(user_id_paths=paths), BATCH_START)
    out = classify(lines_frame(spark, [line(data__attributes={"user_id": "a"}, meta__user_id="m")]), rules)
    assert [r["user_id"] for r in out.collect()] == [expected]


# JSON texts around every grammar rule of RFC 8259, valid and broken once, and the parser's limits.
JSON_TEXTS = [
    "0", "-0", "01", "-01", "1.", "-", ".5", "+1", "1e", "1e+", "1e5", "1E+5", "-1.5e-3", "0x10", "1_000", "NaN",
    "Infinity", "-Infinity", "1" * 38, "1" * 39, "1" * 400, "1" * MAX_NUMBER_DIGITS, "1" * (MAX_NUMBER_DIGITS + 1),
    "-" + "1" * MAX_NUMBER_DIGITS, "1." + "1" * (MAX_NUMBER_DIGITS - 1), "1." + "1" * MAX_NUMBER_DIGITS, "1" * 4300,
    "1e400", "-1e400", "1e-400", '"a\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00x"', '"\\x"', '"\\u12"',
    '"\\U0041"', '"a\x01b"', '"a\tb"', '"a\x7fb"', '"\u2028"', '"\\/"', '"\\b\\f\\n\\r\\t"', "'s'", '"abc', '"',
    "[1,]", '{"a":1,}', '{"a" 1}', '{"a":1 "b":2}', "{a:1}", "{1:2}", "[1 2]", "[,1]", "[1,,2]", '{,"a":1}', '{"a"}',
    '{"a":}', "[", "]", "{", "}", "[]]", "{}}", "true", "True", "nul", "null", "nulls", "[]", "{}", "[[[]]]",
    "[" * MAX_DEPTH + "]" * MAX_DEPTH, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * 5000 + "]" * 5000,
    "//c\n1", "/*c*/1", "1//c", "1/**/", "\u00a01", "1\u00a0", "1\x00", '{"a":1,"a":2}', "[1] 2", "1 2", '"a" "b"',
]  # fmt: skip


def mutations(texts: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` texts, each a valid one with one character inserted, deleted or replaced (from JSON's own)."""
    alphabet = '{}[]:,"\\ 0123456789.-+eE/\ttrufalsn\x00\x1fé'
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        at = rng.randrange(len(text) + 1)
        kind = rng.randrange(3)
        char = rng.choice(alphabet)
        if kind == 0:
            out.append(text[:at] + char + text[at:])
        elif kind == 1 and at < len(text):
            out.append(text[:at] + text[at + 1 :])
        else:
            out.append(text[:at] + char + text[at + 1 :])
    return out


def test_the_contract_agrees_with_a_strict_json_parser_over_a_corpus(spark: SparkSession) -> None:
    """Every text of the corpus, as a whole line and as the value of an attribute inside a valid event, gets from
    Spark the reason the oracle (Python's strict RFC 8259 parser, with the parser limits) gives it."""
    rng = random.Random(8259)
    valid = [
        line(data__attributes={"user_id": "u1", "x": [1, {"b": None, "c": "d\\e"}], "y": -0.5e-3}),
        line(meta__created_at=NOW_MS, meta__tags=["a", "b"], data__attributes={}),
        '[{"a":[]},"b",1e3,true]',
    ]
    texts = [*JSON_TEXTS, *mutations(valid + JSON_TEXTS[:60], 3000, rng)]
    holder = line(data__attributes={"x": 0})
    lines = [*texts, *(holder.replace('{"x": 0}', '{"x": ' + text + "}") for text in texts)]
    lines = [text for text in lines if text.strip(" \t\n\r\x0b\x0c\ufeff") and "\n" not in text and "\r" not in text]
    out = classify(lines_frame(spark, lines), Rules.for_batch(IngestSettings(), BATCH_START))
    got = {row["line_number"]: row["reason"] for row in out.select("line_number", "reason").collect()}
    expected = {n: first_failure(text.encode(), NOW_MS) for n, text in enumerate(lines, 1)}
    disagree = {
        lines[n - 1][:80]: (got.get(n, "skipped"), expected[n])
        for n in expected
        if got.get(n, "skipped") != expected[n]
    }
    assert disagree == {}
    assert sum(reason is None for reason in expected.values()) > 100, "the corpus holds valid events too"
