"""`lakehouse run` as a user runs it: the whole product on a small sample, answers checked against the oracle's
reading of the sample files it landed, and a re-run that writes nothing."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse import tables
from lakehouse.config import Settings, load_settings
from lakehouse.trino_server import status, stop
from tests.conftest import CONF, free_port
from tests.conftest import test_environ as environment_for
from tests.jobs.test_cli import lakehouse
from tests.lake import version
from tests.oracle import Audit, audit

WRITTEN = (
    tables.EVENTS, tables.QUARANTINE, tables.INGEST_RUNS, tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS,
    tables.MONTHLY_USER_ACTIVITY, tables.INGEST_BATCHES, tables.EVENT_IDS, tables.AGGREGATE_RUNS, tables.VALIDATIONS,
)  # fmt: skip
FIRST_STAGES = [
    "generate", "ingest", "validate", "validate", "aggregate", "validate", "validate", "validate", "trino", "publish",
    "usage", "history", "yesterday", "reconcile",
]  # fmt: skip
ANSWERS = ("usage", "history", "yesterday", "reconcile")
STAGE_LINE = re.compile(r"(\S+) +(.*) \(\d+\.\d s\)")


@pytest.fixture
def run_lake(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and the `lakehouse` environment for a fresh lake served by a Trino on a free port; the server
    `lakehouse run` leaves running is stopped at the end."""
    overrides = {**environment_for(tmp_path / "lake"), "LAKEHOUSE__TRINO__PORT": str(free_port())}
    settings = load_settings(CONF, overrides)
    try:
        yield settings, {**os.environ, **overrides}
    finally:
        stop(settings)


def stages(stdout: str) -> dict[str, list[str]]:
    """What each stage line of the output says (without its seconds), by stage; the indented lines that follow a
    stage line are added to it."""
    said: dict[str, list[str]] = defaultdict(list)
    last = ""
    for line in stdout.splitlines():
        if line.startswith(" "):
            said[last][-1] += "\n" + line.strip()
        elif matched := STAGE_LINE.fullmatch(line):
            last = matched[1]
            said[last].append(matched[2])
    return said


def oracle_events(found: Audit) -> list[dict]:
    """The oracle's first-seen valid events as `events` rows: the columns the answers need, derived as the contract
    derives them (conf/local.yaml: `data.attributes.<name>`, else `meta.<name>`)."""

    def first(event: dict, name: str) -> str | None:
        holders = (event["data"]["attributes"], event["meta"])
        return next((holder[name] for holder in holders if holder.get(name) is not None), None)

    rows = []
    for _, event in found.events:
        created = datetime.fromtimestamp(event["meta"]["created_at"] / 1000, UTC)
        rows.append({"event_type": event["data"]["type"], "country": first(event, "country"),
                     "event_date": created.date(), "user_id": first(event, "user_id"),
                     "event_ts": created})  # fmt: skip
    return rows


def expected_answers(settings: Settings) -> dict[str, str]:
    """The answers `lakehouse run` must print, computed by the oracle from the sample files it landed."""
    found = audit(sorted(str(path) for path in (Path(settings.lake.root) / "landing").rglob("*.jsonl*")))
    events = oracle_events(found)
    located = Counter((e["event_type"], e["country"]) for e in events if e["country"] is not None)
    (event_type, country), count = busiest(located)
    pair_users = {e["user_id"] for e in events if (e["event_type"], e["country"]) == (event_type, country)} - {None}
    first, last = min(e["event_date"] for e in events), max(e["event_date"] for e in events)
    user_id, user_events = busiest(Counter(e["user_id"] for e in events if e["user_id"] is not None))
    user_days = {e["event_date"] for e in events if e["user_id"] == user_id}
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    yesterday_users = {e["user_id"] for e in events if (e["event_type"], e["event_date"]) == (event_type, yesterday)}
    total = {"lines_read": found.lines, "valid": len(found.first_seen), "quarantined": sum(found.reasons.values()),
             "duplicates": found.duplicates}  # fmt: skip
    counts = (f"{total['lines_read']} lines read = {total['valid']} valid + {total['quarantined']} quarantined + "
              f"{total['duplicates']} duplicates")  # fmt: skip
    return {
        "ingest": f"batch 1 (168 files): {counts}",
        "usage": f"{event_type} in {country} from {first} to {last} (the busiest type and country): "
        f"{count} events by {len(pair_users)} unique users",
        "history": f"user {user_id} (the most active: {user_events} events on {len(user_days)} days), latest "
        "activity:\n" + "\n".join(history(events, user_id)),
        "yesterday": f"{len(yesterday_users - {None})} users did {event_type} yesterday ({yesterday}, UTC)",
        "reconcile": f"ingest_runs (1 batch): {counts}; {total['valid']} valid = {len(events)} rows in events = "
        f"{len(events)} events in daily_event_stats: reconciled",
    }


def busiest(counted: Counter) -> tuple:
    """The key counted most often, the smallest among equals (as ORDER BY count DESC, key), and its count."""
    return min(counted.items(), key=lambda item: (-item[1], item[0]))


def history(events: list[dict], user_id: str, rows: int = 5) -> list[str]:
    """The user's latest (day, type, country) groups as `lakehouse run` prints them, in Trino's order: latest last
    event first, then type and country (no country last)."""
    groups: dict[tuple, list[datetime]] = defaultdict(list)
    for e in events:
        if e["user_id"] == user_id:
            groups[(e["event_date"], e["event_type"], e["country"])].append(e["event_ts"])

    def order(group: tuple[tuple, list[datetime]]) -> tuple:
        (_, kind, where), seen = group
        return -max(seen).timestamp(), kind, where is None, where or ""

    latest = sorted(groups.items(), key=order)
    return [
        f"{day} {kind} {'in ' + where if where else 'without country'}: {len(seen)} event{'s' * (len(seen) > 1)}, "
        f"{min(seen):%H:%M:%S}–{max(seen):%H:%M:%S}"
        for (day, kind, where), seen in latest[:rows]
    ]


@pytest.mark.slow
def test_run_answers_from_the_lake_and_a_rerun_changes_nothing(run_lake: tuple[Settings, dict[str, str]]) -> None:
    settings, env = run_lake
    first = lakehouse("run", "--sample-events", "3000", env=env)
    assert first.returncode == 0, first.stderr
    said = stages(first.stdout)
    assert [line.split()[0] for line in first.stdout.splitlines() if not line.startswith(" ")] == [
        *FIRST_STAGES, "done"
    ]  # fmt: skip
    assert said["generate"][0].startswith("3000 sample lines in 168 files")
    gated = [tables.EVENTS, tables.QUARANTINE, tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS,
             tables.MONTHLY_USER_ACTIVITY]  # fmt: skip
    assert [line.split()[0] for line in said["validate"]] == gated
    expected = expected_answers(settings)
    assert {stage: said[stage][0] for stage in expected} == expected
    assert status(settings).pid is not None
    assert first.stdout.splitlines()[-1].endswith("(stop it with `lakehouse trino stop`)")

    versions = {name: version(settings, name) for name in WRITTEN}
    again = lakehouse("run", "--sample-events", "3000", env=env)
    assert again.returncode == 0, again.stderr
    said_again = stages(again.stdout)
    assert said_again["ingest"] == ["no new landing file"]
    assert said_again["aggregate"][0].endswith("gates and aggregates skipped")
    assert "generate" not in said_again and "validate" not in said_again
    assert said_again["trino"][0].startswith("already running")
    assert {stage: said_again[stage][0] for stage in ANSWERS} == {stage: expected[stage] for stage in ANSWERS}
    assert {name: version(settings, name) for name in WRITTEN} == versions


def test_a_bad_sample_size_is_a_one_line_error(cli_env: dict[str, str]) -> None:
    done = lakehouse("run", "--sample-events", "0", env=cli_env)
    assert done.returncode == 2
    assert done.stderr == "lakehouse run: error: argument --sample-events: must be at least 1, got 0\n"
    assert done.stdout == ""
