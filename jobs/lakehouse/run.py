"""`lakehouse run`: the whole product end to end on the configured lake (sample data, ingest, gates, aggregates, Trino,
publish), then the typical questions through Trino as the analyst and a reconciliation of the counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from lakehouse import state, tables
from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError, QualityGateFailed
from lakehouse.generate import generate
from lakehouse.ingest import ingest
from lakehouse.publish import publish
from lakehouse.quality import validate
from lakehouse.questions import literal, usage_query
from lakehouse.trino_client import ANALYST, query
from lakehouse.trino_server import start, status

SAMPLE_EVENTS = 200_000
SAMPLE_DAYS = 7
# Few types keep the demo's partitions (type x day x hour) few: each partition is at least one file per batch.
SAMPLE_TYPES = 40
HISTORY_ROWS = 5

BUSIEST = """
SELECT event_type, country, sum(events) AS events,
       (SELECT min(event_date) FROM bi.daily_event_usage) AS first_day,
       (SELECT max(event_date) FROM bi.daily_event_usage) AS last_day
FROM bi.daily_event_usage
WHERE country IS NOT NULL
GROUP BY event_type, country
ORDER BY events DESC, event_type, country
LIMIT 1
"""
MOST_ACTIVE = """
SELECT user_id, sum(events) AS events, count(*) AS days
FROM bi.user_daily_activity
GROUP BY user_id
ORDER BY events DESC, user_id
LIMIT 1
"""
HISTORY = f"""
SELECT event_date, event_type, country, events, first_seen, last_seen
FROM bi.user_event_history
WHERE user_id = {{user_id}}
ORDER BY last_seen DESC, event_type, country
LIMIT {HISTORY_ROWS}
"""
USERS_ON = """
SELECT count(DISTINCT user_id) AS users
FROM bi.event_usage
WHERE event_type = {event_type} AND event_date = DATE {day}
"""
# As the pipeline's user: `analyst` may not read `events` or `ingest_runs`.
COUNTS = """
SELECT r.batches, r.unbalanced, r.lines_read, r.valid, r.quarantined, r.duplicates, e.rows, s.events
FROM (SELECT count(*) AS batches, count_if(lines_read <> valid + quarantined + duplicates) AS unbalanced,
             coalesce(sum(lines_read), 0) AS lines_read, coalesce(sum(valid), 0) AS valid,
             coalesce(sum(quarantined), 0) AS quarantined, coalesce(sum(duplicates), 0) AS duplicates
      FROM lake.ingest_runs) AS r
CROSS JOIN (SELECT count(*) AS rows FROM lake.events) AS e
CROSS JOIN (SELECT coalesce(sum(events), 0) AS events FROM lake.daily_event_stats) AS s
"""


class _Progress:
    """Says one line per stage: its name, what it did, and the seconds since the previous line."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.started = self.last = time.monotonic()

    def __call__(self, stage: str, what: str) -> None:
        now = time.monotonic()
        self.say(f"{stage:<9} {what} ({now - self.last:.1f} s)")
        self.last = now


def run(settings: Settings, say: Callable[[str], None] = print, sample_events: int | None = None) -> None:
    """Runs every stage, one progress line each; raises QualityGateFailed when a gate fails (nothing is published
    then) or when the counts do not reconcile."""
    progress = _Progress(say)
    landing = _local_landing(settings)
    if not any(p.is_file() for p in landing.rglob("*")):
        progress("generate", _sample(landing, sample_events or SAMPLE_EVENTS))
    progress("ingest", _ingested(ingest(settings)))
    if state.unaggregated_batches(settings):
        _gate(settings, progress, tables.EVENTS, tables.QUARANTINE)
        summary = aggregate(settings)
        progress("aggregate", f"{_count(len(summary['days']), 'day')} rebuilt: {summary['user_activity_rows']} "
                              f"{tables.DAILY_USER_ACTIVITY} rows, {summary['event_stats_rows']} "
                              f"{tables.DAILY_EVENT_STATS} rows, {summary['monthly_activity_rows']} "
                              f"{tables.MONTHLY_USER_ACTIVITY} rows")  # fmt: skip
        if summary["days"]:
            _gate(settings, progress, *tables.GOLD)
    else:
        progress("aggregate", "every ingest batch is aggregated already: gates and aggregates skipped")
    progress("trino", _served(settings))
    progress("publish", _published(publish(settings)))
    _answer(settings, progress)
    progress("reconcile", _reconciled(settings))
    server = status(settings)
    left = f"Trino is left running at {server.url} (stop it with `lakehouse trino stop`)" if server.managed else server
    say(f"done in {time.monotonic() - progress.started:.1f} s; {left}")


def _local_landing(settings: Settings) -> Path:
    landing = tables.local_path(settings, tables.LANDING, "`lakehouse run` makes sample data")
    landing.mkdir(parents=True, exist_ok=True)
    return landing


def _sample(landing: Path, events: int) -> str:
    start = datetime.now(UTC).date() - timedelta(days=SAMPLE_DAYS)
    made = generate(landing / "sample", events, days=SAMPLE_DAYS, start=start, users=5_000, types=SAMPLE_TYPES,
                    bad_rate=0.01, dup_rate=0.02, seed=1)  # fmt: skip
    return f"{made.lines} sample lines in {len(made.files)} files under {landing / 'sample'}"


def _ingested(summaries: list[dict]) -> str:
    batches = [summary["batch"] for summary in summaries if summary["batch"] is not None]
    if not batches:
        return "no new landing file"
    total = {key: sum(summary[key] for summary in summaries) for key in ("lines_read", "valid", "quarantined",
                                                                          "duplicates", "files")}  # fmt: skip
    named = f"batch {batches[0]}" if len(batches) == 1 else f"batches {batches[0]}–{batches[-1]}"
    return (f"{named} ({_count(total['files'], 'file')}): {total['lines_read']} lines read = {total['valid']} valid "
            f"+ {total['quarantined']} quarantined + {total['duplicates']} duplicates")  # fmt: skip


def _gate(settings: Settings, progress: _Progress, *names: str) -> None:
    """Validates each table's rows just written; a failure raises QualityGateFailed and ends the run."""
    for name in names:
        result = validate(settings, name)
        progress("validate", f"{name} ({result['scope']}): passed on {_count(result['rows'], 'row')}")


def _served(settings: Settings) -> str:
    """Starts Trino unless it runs; what was done."""
    was_running = status(settings).pid is not None
    server = start(settings)
    if not server.managed:
        return str(server)
    stale = "" if server.current else "; its settings changed since it started: stop and start it to apply them"
    return f"{'already running' if was_running else 'started'} (pid {server.pid}) at {server.url}{stale}"


def _published(summary: dict) -> str:
    registered = ", ".join(summary["registered"]) or "none"
    text = f"tables registered now: {registered}; views: {', '.join(summary['views'])}"
    waiting = summary["views_waiting_for_tables"]
    return f"{text}; waiting for their tables: {', '.join(waiting)}" if waiting else text


def _answer(settings: Settings, progress: _Progress) -> None:
    """The typical questions of README "Asking the gold tables", through the `bi` views as `analyst`."""
    busiest = _ask(settings, BUSIEST)
    if not busiest:
        raise LakehouseError("no answers: the gold tables hold no event with a country yet")
    event_type, country, _, first, last = busiest[0]
    # DESIGN §5's typical BI query, whole months from the monthly rollup.
    [(events, users)] = query(settings, usage_query(event_type, country, first, last), ANALYST).rows
    progress("usage", f"{event_type} in {country} from {first} to {last} (the busiest type and country): "
                      f"{_count(events, 'event')} by {_count(users, 'unique user')}")  # fmt: skip
    user_id, total, days = _ask(settings, MOST_ACTIVE)[0]
    history = _ask(settings, HISTORY, user_id=user_id)
    progress("history", f"user {user_id} (the most active: {_count(total, 'event')} on {_count(days, 'day')}), "
                        "latest activity:")  # fmt: skip
    for day, kind, where, count, first_seen, last_seen in history:
        place = f"in {where}" if where is not None else "without country"
        seen = f"{_clock(first_seen)}–{_clock(last_seen)}"
        progress.say(f"{'':10}{day} {kind} {place}: {_count(count, 'event')}, {seen}")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    (users_yesterday,) = _ask(settings, USERS_ON, event_type=event_type, day=yesterday)[0]
    progress("yesterday", f"{_count(users_yesterday, 'user')} did {event_type} yesterday ({yesterday}, UTC)")


def _ask(settings: Settings, sql: str, **values: str | date) -> list[tuple]:
    """The rows of `sql` with `values` filled in as SQL literals, run as `analyst`."""
    literals = {name: literal(str(value)) for name, value in values.items()}
    return query(settings, sql.format(**literals), ANALYST).rows


def _count(number: int, noun: str, nouns: str | None = None) -> str:
    return f"{number} {noun if number == 1 else nouns or noun + 's'}"


def _clock(moment: datetime | None) -> str:
    return "?" if moment is None else moment.astimezone(UTC).strftime("%H:%M:%S")


def _reconciled(settings: Settings) -> str:
    """The counts of every ingest batch against `events` and `daily_event_stats` as Trino sees them; raises
    QualityGateFailed, with the figures, when they do not reconcile."""
    batches, unbalanced, lines_read, valid, quarantined, duplicates, rows, aggregated = query(settings, COUNTS).rows[0]
    forgotten = state.forgotten_events(settings)
    kept = f"{valid} valid" + (f" - {forgotten} forgotten (forget-user) = {valid - forgotten}" if forgotten else "")
    figures = (f"ingest_runs ({_count(batches, 'batch', 'batches')}): {lines_read} lines read = {valid} valid + "
               f"{quarantined} quarantined + {duplicates} duplicates; {kept} = {rows} rows in events = {aggregated} "
               f"events in {tables.DAILY_EVENT_STATS}")  # fmt: skip
    if unbalanced:
        figures += f"; in {_count(unbalanced, 'batch', 'batches')} lines read != valid + quarantined + duplicates"
    if unbalanced or lines_read != valid + quarantined + duplicates or not valid - forgotten == rows == aggregated:
        raise QualityGateFailed(f"the counts do not reconcile: {figures}")
    return f"{figures}: reconciled"
