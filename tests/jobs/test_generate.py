"""`lakehouse.generate`: files read back independently and judged by a checker of DESIGN §1 written for the test."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from lakehouse.generate import GenerateSummary, generate
from tests.oracle import ALL_REASONS, COUNTRIES, DAY_MS, FILE_NAME, HOUR_MS, REQUIRED_TYPES, UUID4, Audit, audit


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateSummary, Audit]:
    out = tmp_path_factory.mktemp("landing")
    summary = generate(
        out, events=6000, days=2, start=date(2024, 3, 30), users=500, types=60, bad_rate=0.1, dup_rate=0.05, seed=7
    )
    return out, summary, audit(summary.files)


def test_every_line_is_accounted_for(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, summary, found = run
    assert summary.lines == 6000 == found.lines
    # `lines` is the generator's own sum of the other figures, so each figure is checked by itself (and by the
    # checker, below): 6000 lines of which 5% re-sent and 10% bad.
    assert (summary.valid, summary.duplicates, sum(summary.bad.values())) == (5100, 300, 600)


def test_independent_checker_agrees_with_every_reason(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, summary, found = run
    assert set(summary.bad) == ALL_REASONS
    assert dict(found.reasons) == summary.bad
    assert len(found.first_seen) == summary.valid
    assert found.duplicates == summary.duplicates


def test_bad_reasons_are_even_and_too_large_is_rare(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, summary, _ = run
    others = [count for reason, count in summary.bad.items() if reason != "too_large"]
    assert summary.bad["too_large"] == 1
    assert max(others) - min(others) <= 1


@pytest.mark.parametrize(
    ("events", "bad_rate", "too_large"), [(999, 0.01, 0), (1000, 0.0005, 1), (1000, 0.01, 1), (40_000, 0.06, 2)]
)
def test_too_large_lines_at_most_one_per_thousand_bad_but_at_least_one(
    tmp_path: Path, events: int, bad_rate: float, too_large: int
) -> None:
    summary = generate(tmp_path, events=events, bad_rate=bad_rate, users=50, types=8)
    assert summary.bad.get("too_large", 0) == too_large
    assert summary.lines == events


def test_duplicates_are_exact_copies_from_this_and_earlier_files(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    assert found.duplicates_not_copies == 0
    assert 0 < found.duplicates_same_file < found.duplicates


def test_same_arguments_write_the_same_bytes(tmp_path: Path) -> None:
    args = {"events": 3000, "days": 1, "users": 200, "types": 40, "bad_rate": 0.05, "dup_rate": 0.05, "seed": 3}
    first, second = generate(tmp_path / "a", **args), generate(tmp_path / "b", **args)
    other_seed = generate(tmp_path / "c", **{**args, "seed": 4})
    assert [f.replace("/a/", "/b/") for f in first.files] == second.files
    assert _counts(first) == _counts(second)
    assert [Path(f).read_bytes() for f in first.files] == [Path(f).read_bytes() for f in second.files]
    assert [Path(f).read_bytes() for f in first.files] != [Path(f).read_bytes() for f in other_seed.files]


def _counts(summary: GenerateSummary) -> tuple[int, int, int, dict[str, int]]:
    return summary.lines, summary.valid, summary.duplicates, summary.bad


def test_one_file_per_arrival_hour(run: tuple[Path, GenerateSummary, Audit]) -> None:
    out, summary, _ = run
    names = [str(Path(f).relative_to(out)) for f in summary.files]
    assert summary.files == sorted(summary.files)
    assert names[0] == "2024-03-30/events-20240330-00.jsonl"
    assert names[-1] == "2024-03-31/events-20240331-23.jsonl"
    assert len(names) == 48
    assert all(FILE_NAME.fullmatch(n) for n in names)
    sizes = [sum(1 for line in Path(f).read_bytes().split(b"\n") if line.strip()) for f in summary.files]
    assert max(sizes) < 2 * min(sizes)


def test_created_at_is_in_the_arrival_hour_unless_late(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    late = 0
    for name, event in found.events:
        hour_ms = _file_hour_ms(name)
        created = event["meta"]["created_at"]
        assert hour_ms - 3 * DAY_MS <= created < hour_ms + HOUR_MS
        late += created < hour_ms
    assert 0.01 < late / len(found.events) < 0.06


def _file_hour_ms(name: str) -> int:
    match = FILE_NAME.search(name)
    assert match
    hour = datetime.strptime(match[2] + match[3], "%Y%m%d%H").replace(tzinfo=UTC)
    return int(hour.timestamp()) * 1000


def test_events_look_like_production(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    events = [event for _, event in found.events]
    users, countries, in_meta = _users(events)
    assert all(UUID4.fullmatch(e["data"]["id"]) for e in events)
    assert set(countries) == COUNTRIES
    assert 0.03 < users.count(None) / len(events) < 0.07
    assert 0.06 < in_meta / (len(events) - users.count(None)) < 0.14
    assert all(isinstance(e["meta"]["service"], str) for e in events)
    assert any(len(e["meta"]) > 2 for e in events)


def _users(events: list[dict]) -> tuple[list[str | None], list[str], int]:
    users, countries, in_meta = [], [], 0
    for event in events:
        attributes, meta = event["data"]["attributes"], event["meta"]
        user = attributes.get("user_id") or meta.get("user_id")
        country = attributes.get("country") or meta.get("country")
        assert (user is None) == (country is None)
        in_meta += "user_id" in meta
        users.append(user)
        countries += [country] if country else []
    return users, countries, in_meta


def test_users_and_types_are_skewed(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    events = [event for _, event in found.events]
    types = Counter(e["data"]["type"] for e in events)
    users = Counter(_users(events)[0])
    del users[None]
    assert REQUIRED_TYPES <= set(types)
    assert len(types) <= 60
    assert any(re.fullmatch(r"feature_\d{3}_[a-z]+", t) for t in types)
    assert types.most_common(1)[0][1] > 10 * types.most_common()[len(types) // 2][1]
    assert users.most_common(1)[0][1] > 10 * users.most_common()[len(users) // 2][1]


def test_each_type_keeps_its_attribute_names(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    shapes: dict[str, set[frozenset[str]]] = {}
    for _, event in found.events:
        names = frozenset(event["data"]["attributes"]) - {"user_id", "country"}
        shapes.setdefault(event["data"]["type"], set()).add(names)
    assert all(len(kinds) == 1 for kinds in shapes.values())
    assert shapes["page_viewed"] == {frozenset({"url", "referrer", "duration_ms"})}
    assert shapes["order_placed"] == {frozenset({"order_id", "amount", "currency", "items"})}


def test_amounts_have_two_decimals(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, _, found = run
    orders = [raw for _, raw in found.first_seen.values() if b'"type":"order_placed"' in raw]
    assert orders
    assert all(re.search(rb'"amount":\d+\.\d\d[,}]', raw) for raw in orders)


def test_tolerated_noise_is_present_and_not_counted(run: tuple[Path, GenerateSummary, Audit]) -> None:
    _, summary, found = run
    assert found.bom_files > 0
    assert found.crlf_lines > 0
    assert found.blank_lines > 0
    assert found.lines == summary.lines


def test_gzip_output_holds_the_same_lines(tmp_path: Path) -> None:
    args = {"events": 2000, "users": 100, "types": 20, "bad_rate": 0.02, "dup_rate": 0.02, "seed": 5}
    plain, packed = generate(tmp_path / "plain", **args), generate(tmp_path / "packed", compress=True, **args)
    assert all(f.endswith(".jsonl.gz") for f in packed.files)
    assert _counts(plain) == _counts(packed)
    assert [gzip.decompress(Path(f).read_bytes()) for f in packed.files] == [Path(f).read_bytes() for f in plain.files]
    assert dict(audit(packed.files).reasons) == packed.bad


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    summary = generate(tmp_path, events=500, users=20, types=8)
    before = {f: Path(f).read_bytes() for f in summary.files}
    with pytest.raises(FileExistsError, match="already exists"):
        generate(tmp_path, events=500, users=20, types=8, seed=1)
    assert {f: Path(f).read_bytes() for f in summary.files} == before


def test_no_events_no_files(tmp_path: Path) -> None:
    summary = generate(tmp_path / "new", events=0, bad_rate=0.5, dup_rate=0.4)
    assert summary == GenerateSummary([], 0, 0, 0, {})
    assert (tmp_path / "new").is_dir()
    assert not any((tmp_path / "new").iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"events": -1}, "events"),
        ({"days": 0}, "days"),
        ({"users": 0}, "users"),
        ({"types": 7}, "types"),
        ({"bad_rate": -0.1}, "bad_rate"),
        ({"bad_rate": 1.0}, "bad_rate"),
        ({"dup_rate": 1.5}, "dup_rate"),
        ({"bad_rate": 0.5, "dup_rate": 0.5}, "bad_rate \\+ dup_rate"),
        ({"start": date(1999, 12, 31)}, "start"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **{"events": 10, **args})
    assert not any(tmp_path.iterdir())
