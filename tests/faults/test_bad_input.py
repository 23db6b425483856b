"""Bad input at volume: every contract rule broken line after line, empty files, a line far over the limit, many tiny
files, a gzip bomb. Each ends in exact accounting against what the test wrote (and the oracle), a machine-readable
reason, and a read that never holds the bad input whole. Sizes are FAULTS_* environment variables, small for CI."""

from __future__ import annotations

import base64
import gzip
import json
import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse import landing, tables
from lakehouse.config import Settings, load_settings
from lakehouse.ingest import _fill, ingest
from lakehouse.landing import list_landing, number_lines, read_guard, read_lines, screen
from lakehouse.records import LandingFile
from tests import conftest
from tests.lake import event_line, table
from tests.oracle import MAX_DEPTH, MAX_NUMBER_DIGITS, first_failure

pytestmark = pytest.mark.slow

RULE_LINES = int(os.environ.get("FAULTS_RULE_LINES", "3000"))
LONG_LINE_BYTES = int(os.environ.get("FAULTS_LONG_LINE_BYTES", str(24 * 1024**2)))
TINY_FILES = int(os.environ.get("FAULTS_TINY_FILES", "200"))
MAX_LINE_BYTES = 2000
DAY = datetime(2024, 3, 1, 10, tzinfo=UTC)
DAY_MS = int(DAY.timestamp() * 1000)


def with_limits(root: Path, **ingest: object) -> Settings:
    """The test settings for a lake at `root` (files taken as soon as landed), with `ingest` settings overridden."""
    values = {"settle_seconds": 0, **ingest}
    overrides = {f"LAKEHOUSE__INGEST__{key.upper()}": str(value) for key, value in values.items()}
    return load_settings(conftest.CONF, {**conftest.test_environ(root), **overrides})


@pytest.fixture(autouse=True)
def no_quality_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest's GX checks of each batch (tests/jobs/test_quality.py covers them) left out: here they would only add
    ~20 s per batch."""
    monkeypatch.setattr("lakehouse.ingest._checked", lambda *args: {"checks": {}, "check_seconds": 0.0})


@pytest.fixture
def limited(tmp_path: Path, spark: SparkSession) -> Callable[..., Settings]:
    """Settings for a fresh lake (an empty landing folder) with ingest limits of the test's choosing."""
    (tmp_path / "lake" / "landing").mkdir(parents=True)
    return lambda **ingest: with_limits(tmp_path / "lake", **ingest)


def body(event_id: str = "e", **changes: object) -> dict:
    """A valid event (on DAY) with `changes`: a dotted path set to a value, or removed when the value is Ellipsis."""
    event = {"data": {"id": event_id, "type": "login", "attributes": {"user_id": "u1", "country": "DE"}},
             "meta": {"created_at": DAY_MS}}  # fmt: skip
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = event
        for part in parents:
            node = node[part]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return event


def text(event_id: str = "e", **changes: object) -> str:
    return json.dumps(body(event_id, **changes))


# Each rule of DESIGN §1 broken in its own ways: (what the line is, given its number; the reason it must get).
VARIANTS: list[tuple[Callable[[int], bytes], str | None]] = [
    (lambda n: text(f"v{n}").encode(), None),
    (lambda n: text(f"v{n}").encode() + b"\r", None),  # CRLF line ending
    (lambda n: b"\xef\xbb\xbf" + text(f"v{n}").encode(), None),  # a byte-order mark
    (lambda n: b"\xff" + text(f"u{n}").encode(), "not_utf8"),
    (lambda n: text(f"u{n}").encode()[:-2] + b"\xc3\x28}", "not_utf8"),  # a broken two-byte sequence
    (lambda n: text(f"u{n}", **{"data.attributes.s": "x"}).encode().replace(b'"x"', b'"\xed\xa0\x80"'), "not_utf8"),
    (lambda n: text(f"u{n}", **{"data.attributes.n": "é"}).encode().replace(b"\\u00e9", b"\xc3"), "not_utf8"),
    (lambda n: text(f"l{n}", **{"data.attributes.pad": "x" * MAX_LINE_BYTES}).encode(), "too_large"),
    (lambda n: text(f"l{n}", **{"data.attributes.pad": "é" * MAX_LINE_BYTES}).encode(), "too_large"),
    (lambda n: text(f"m{n}").encode()[:-1], "malformed_json"),
    (lambda n: b"{'data': 1}", "malformed_json"),
    (lambda n: b'{"a": 1,}', "malformed_json"),
    (lambda n: b'{"a": NaN}', "malformed_json"),
    (lambda n: text(f"m{n}").encode() + b" // comment", "malformed_json"),
    (lambda n: text(f"m{n}").encode() + b"/**/", "malformed_json"),
    (lambda n: (text(f"m{n}") + text(f"m{n}b")).encode(), "malformed_json"),  # two events on one line
    (lambda n: text(f"m{n}").encode() + b"]", "malformed_json"),
    (lambda n: text(f"m{n}").encode() + b",", "malformed_json"),
    (lambda n: text(f"m{n}").encode() + b" trailing", "malformed_json"),
    (lambda n: b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "malformed_json"),
    (lambda n: b'{"n": ' + b"1" * (MAX_NUMBER_DIGITS + 1) + b"}", "malformed_json"),
    (lambda n: b"\x00" + text(f"m{n}").encode(), "malformed_json"),
    (lambda n: b"[1, 2]", "not_an_object"),
    (lambda n: b'"text"', "not_an_object"),
    (lambda n: b"42", "not_an_object"),
    (lambda n: b"null", "not_an_object"),
    (lambda n: b"true", "not_an_object"),
    (lambda n: text(**{"data": ...}).encode(), "missing:data"),
    (lambda n: text(**{"data": None}).encode(), "missing:data"),
    (lambda n: text(**{"data": [1]}).encode(), "bad_type:data"),
    (lambda n: text(**{"data.id": ...}).encode(), "missing:data.id"),
    (lambda n: text(**{"data.id": 7}).encode(), "bad_type:data.id"),
    (lambda n: text(**{"data.id": ""}).encode(), "bad_type:data.id"),
    (lambda n: text(f"t{n}", **{"data.type": ...}).encode(), "missing:data.type"),
    (lambda n: text(f"t{n}", **{"data.type": "has space"}).encode(), "bad_type:data.type"),
    (lambda n: text(f"t{n}", **{"data.type": "t" * 129}).encode(), "bad_type:data.type"),
    (lambda n: text(f"t{n}", **{"data.type": 3}).encode(), "bad_type:data.type"),
    (lambda n: text(f"a{n}", **{"data.attributes": ...}).encode(), "missing:data.attributes"),
    (lambda n: text(f"a{n}", **{"data.attributes": []}).encode(), "bad_type:data.attributes"),
    (lambda n: text(f"a{n}", **{"meta": ...}).encode(), "missing:meta"),
    (lambda n: text(f"a{n}", **{"meta": "web"}).encode(), "bad_type:meta"),
    (lambda n: text(f"c{n}", **{"meta.created_at": ...}).encode(), "missing:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": None}).encode(), "missing:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": str(DAY_MS)}).encode(), "bad_type:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": True}).encode(), "bad_type:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": DAY_MS + 0.5}).encode(), "bad_type:meta.created_at"),
    (lambda n: text(f"c{n}").replace(str(DAY_MS), "1.7e12").encode(), "bad_type:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": 946_684_799_999}).encode(), "out_of_range:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": 4_102_444_800_000}).encode(), "out_of_range:meta.created_at"),
    (lambda n: text(f"c{n}", **{"meta.created_at": 10**20}).encode(), "out_of_range:meta.created_at"),
    (lambda n: text(f"d{n // 1000}").encode(), None),  # re-sent: every copy after the first is a duplicate
    (lambda n: b"  \t", "blank"),  # not a line: skipped, not counted
]


def rule_file(path: Path, lines: int) -> dict[int, str]:
    """Writes `lines` lines (gzip), each breaking the rule of the next variant in turn (or none, or blank); the
    reason each line number must get ('valid', 'duplicate', 'blank' for the rest), as the test wrote it."""
    expected, seen = {}, set()
    with gzip.open(path, "wb", compresslevel=1) as out:
        for number in range(1, lines + 1):
            make, reason = VARIANTS[(number - 1) % len(VARIANTS)]
            line = make(number)
            out.write(line + b"\n")
            if reason is None:
                event_id = json.loads(line.decode("utf-8-sig"))["data"]["id"]
                reason = "duplicate" if event_id in seen else "valid"
                seen.add(event_id)
            expected[number] = reason
    return expected


def test_every_rule_broken_line_after_line_is_accounted_exactly(limited: Callable[..., Settings]) -> None:
    settings = limited(max_line_bytes=MAX_LINE_BYTES)
    landing_dir = Path(settings.lake.root) / "landing"
    expected = rule_file(landing_dir / "rules.jsonl.gz", RULE_LINES)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for make, reason in VARIANTS:  # the test's record agrees with the independent oracle
        line = make(7).removesuffix(b"\r").removeprefix(b"\xef\xbb\xbf")
        if reason not in ("blank", None):
            assert first_failure(line, now_ms, MAX_LINE_BYTES) == reason, line[:80]
    counts = Counter(expected.values())
    [summary] = ingest(settings)
    lines_read = RULE_LINES - counts["blank"]
    assert (summary["lines_read"], summary["valid"], summary["duplicates"]) == (
        lines_read, counts["valid"], counts["duplicate"]
    )  # fmt: skip
    assert summary["lines_read"] == summary["valid"] + summary["quarantined"] + summary["duplicates"]
    wanted = {reason: n for reason, n in counts.items() if reason not in ("valid", "duplicate", "blank")}
    assert summary["reasons"] == wanted
    spark = SparkSession.getActiveSession()
    rows = table(spark, settings, tables.QUARANTINE).select("line_number", "reason", "raw").collect()
    assert {row["line_number"]: row["reason"] for row in rows} == {
        number: reason for number, reason in expected.items() if reason in wanted
    }
    too_large = [row["raw"] for row in rows if row["reason"] == "too_large"]
    assert too_large and all(len(raw) == MAX_LINE_BYTES for raw in too_large), "a prefix of the line"
    [run] = table(spark, settings, tables.INGEST_RUNS).collect()
    assert (run["lines_read"], run["valid"], run["quarantined"], run["duplicates"]) == (
        summary["lines_read"], summary["valid"], summary["quarantined"], summary["duplicates"]
    )  # fmt: skip


def test_empty_files_are_accounted_and_block_nothing(limited: Callable[..., Settings]) -> None:
    settings = limited()
    landing_dir = Path(settings.lake.root) / "landing"
    (landing_dir / "empty.jsonl").write_bytes(b"")
    (landing_dir / "empty.jsonl.gz").write_bytes(gzip.compress(b""))
    (landing_dir / "zero-bytes.jsonl.gz").write_bytes(b"")
    [empty] = ingest(settings)
    assert (empty["batch"], empty["files"], empty["lines_read"], empty["reasons"]) == (1, 3, 0, {})
    (landing_dir / "events.jsonl").write_text(event_line("a", DAY) + "\n")
    [after] = ingest(settings)
    assert (after["batch"], after["files"], after["lines_read"], after["valid"]) == (2, 1, 1, 1)
    assert ingest(settings)[0]["batch"] is None


def long_line(size: int, tail: bytes = b"") -> bytes:
    """A JSON event of `size` bytes (a long attribute), `tail` in its padding's last bytes."""
    head, end = b'{"data": {"id": "long", "type": "login", "attributes": {"pad": "', b'"}}, "meta": {}}'
    return head + b"x" * (size - len(head) - len(end) - len(tail)) + tail + end


def test_a_line_far_over_the_limit_is_quarantined_by_size_as_a_prefix(limited: Callable[..., Settings]) -> None:
    """A line of LONG_LINE_BYTES (1 GiB in the benchmark) is cut by the scan, never held by Spark whole: it gets
    `too_large` (or `not_utf8` when a byte far into it is not UTF-8) with its first max_line_bytes as `raw`, in its
    own line number, and every other line of its file keeps its number."""
    settings = limited(max_line_bytes=MAX_LINE_BYTES)
    landing_dir = Path(settings.lake.root) / "landing"
    invalid_size = landing.SCAN_CHUNK * 2 + 1
    with open(landing_dir / "long.jsonl", "wb") as out:
        out.write(event_line("a", DAY).encode() + b"\n")
        out.write(long_line(LONG_LINE_BYTES) + b"\r\n")
        out.write(event_line("b", DAY).encode() + b"\n\n")
        out.write(long_line(invalid_size, tail=b"\xff") + b"\n")
        out.write(event_line("c", DAY).encode())
    (landing_dir / "long.jsonl.gz").write_bytes(gzip.compress(long_line(LONG_LINE_BYTES), compresslevel=1))
    [summary] = ingest(settings)
    assert (summary["lines_read"], summary["valid"], summary["quarantined"]) == (6, 3, 3)
    assert summary["reasons"] == {"too_large": 2, "not_utf8": 1}
    spark = SparkSession.getActiveSession()
    rows = {(r["source_file"], r["line_number"]): r for r in table(spark, settings, tables.QUARANTINE).collect()}
    assert {key: row["reason"] for key, row in rows.items()} == {
        ("long.jsonl", 2): "too_large", ("long.jsonl", 5): "not_utf8", ("long.jsonl.gz", 1): "too_large"
    }  # fmt: skip
    assert rows[("long.jsonl", 2)]["raw"] == long_line(LONG_LINE_BYTES)[:MAX_LINE_BYTES].decode()
    assert rows[("long.jsonl.gz", 1)]["raw"] == long_line(LONG_LINE_BYTES)[:MAX_LINE_BYTES].decode()
    assert rows[("long.jsonl", 5)]["raw"] == base64.b64encode(long_line(invalid_size)[:MAX_LINE_BYTES]).decode()
    events = table(spark, settings, tables.EVENTS).select("event_id", "source_file").collect()
    assert sorted(row["event_id"] for row in events) == ["a", "b", "c"]
    assert not list((Path(settings.lake.root) / "_staging").rglob("*.jsonl")), "the cut copies are removed"


def test_the_cut_copy_keeps_every_line_and_its_number(
    spark: SparkSession, settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With small scan chunks, lines of every ending, a byte-order mark, characters across the cut and bad bytes
    beyond it: the copy Spark reads, through a read guard of two chunks, has every line, each in its number, each
    over the limit cut to a prefix that keeps its reason."""
    monkeypatch.setattr("lakehouse.landing.SCAN_CHUNK", 64)
    limit = 50
    lines = [b"\xef\xbb\xbf" + b"b" * 300, b"short", b"c" * 51, b"\xc3\xa9" * 200, b"",
             b"d" * 40 + b"\xff" + b"d" * 400, b"e" * 1000, b"f"]  # fmt: skip
    data = lines[0] + b"\r\n" + lines[1] + b"\r" + lines[2] + b"\n" + b"\n".join(lines[3:])
    (landing / "odd.jsonl").write_bytes(data)
    (landing / "odd.jsonl.gz").write_bytes(gzip.compress(data))
    files = list_landing(spark, tables.table_path(settings, tables.LANDING), settings.ingest.extensions)
    staging = tables.table_path(settings, "_staging/test")
    screened = screen(spark, files, limit, 10**9, staging)
    assert sorted(screened.read_as) == ["odd.jsonl", "odd.jsonl.gz"] and screened.set_aside == {}
    read = number_lines(read_lines(spark, [screened.read_as[f.path] for f in files], read_guard(limit)))
    got = {(r["source_file"], r["line_number"]): bytes(r["value"]) for r in read.selectExpr(
        "source_file", "line_number", "cast(value as binary) as value").collect()}  # fmt: skip
    for name in ("odd.jsonl", "odd.jsonl.gz"):
        values = [got[(name, number)] for number in range(1, len(lines) + 1)]
        assert len([key for key in got if key[0] == name]) == len(lines)
        assert values[1] == b"short" and values[4] == b"" and values[7] == b"f"
        reasons = [first_failure(value, 0, limit) for value in values]
        originals = [line.removeprefix(b"\xef\xbb\xbf") for line in lines]
        assert reasons == [first_failure(line, 0, limit) for line in originals]
        assert all(len(value) <= limit + 4 for value in values)
        assert values[0] == b"b" * (limit + 1) and values[3] == b"\xc3\xa9" * 26
    as_landed = read_lines(spark, files[:1], read_guard(limit)).collect()
    assert len(as_landed) == len(lines) - 4, "the guard holds: Hadoop drops what is longer, which is why the copy"


def test_many_tiny_files_in_one_batch(limited: Callable[..., Settings]) -> None:
    """TINY_FILES files of one or two lines, in 1,000-line folders: one batch, every line accounted."""
    settings = limited()
    landing_dir = Path(settings.lake.root) / "landing"
    written = 0
    for number in range(TINY_FILES):
        lines = [event_line(f"t{number}-{k}", DAY) for k in range(1 + number % 2)]
        (landing_dir / f"{number // 1000:03}").mkdir(exist_ok=True)
        (landing_dir / f"{number // 1000:03}" / f"{number:06}.jsonl").write_text("\n".join(lines) + "\n")
        written += len(lines)
    [summary] = ingest(settings)
    assert (summary["files"], summary["lines_read"], summary["valid"]) == (TINY_FILES, written, written)
    assert ingest(settings)[0]["batch"] is None


def test_a_batch_takes_at_most_max_batch_files() -> None:
    files = [LandingFile(f"{n}.jsonl", f"l{n}", f"u{n}", 10) for n in range(7)]
    assert [f.path for f in _fill(files, max_bytes=1000, max_files=3)] == ["0.jsonl", "1.jsonl", "2.jsonl"]
    assert len(_fill(files, max_bytes=25, max_files=3)) == 2
    assert len(_fill(files[:1], max_bytes=1, max_files=1)) == 1, "a file larger than a batch is a batch of its own"


def test_a_gzip_bomb_is_set_aside_by_expanded_size(limited: Callable[..., Settings]) -> None:
    """A small .gz expanding far beyond `ingest.max_file_expanded_bytes` (and a plain file larger than it) is set aside
    unread, the scan stopping past the limit; the rest of the batch is ingested."""
    cap = 16 * 1024**2
    settings = limited(max_file_expanded_bytes=cap)
    landing_dir = Path(settings.lake.root) / "landing"
    bomb = gzip.compress(b"0" * (256 * 1024**2), compresslevel=9)
    assert len(bomb) < 300_000
    (landing_dir / "bomb.jsonl.gz").write_bytes(bomb)
    (landing_dir / "big.jsonl").write_bytes((event_line("big", DAY) + "\n").encode() * (cap // 100))
    (landing_dir / "ok.jsonl.gz").write_bytes(gzip.compress((event_line("g", DAY) + "\n").encode()))
    (landing_dir / "ok.jsonl").write_text(event_line("p", DAY) + "\n")
    [summary] = ingest(settings)
    assert (summary["files"], summary["lines_read"], summary["valid"]) == (4, 4, 2)
    assert summary["reasons"] == {"unreadable_file": 2}
    message = f"expands to more than ingest.max_file_expanded_bytes ({cap} bytes)"
    assert summary["set_aside"] == {"bomb.jsonl.gz": message, "big.jsonl": message}
    spark = SparkSession.getActiveSession()
    rows = table(spark, settings, tables.QUARANTINE).collect()
    assert {(r["source_file"], r["reason"], r["line_number"], r["raw"]) for r in rows} == {
        ("bomb.jsonl.gz", "unreadable_file", None, message), ("big.jsonl", "unreadable_file", None, message)
    }  # fmt: skip
