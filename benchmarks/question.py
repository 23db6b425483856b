"""The typical BI question (DESIGN §5: one event type in one country over six months, its events and exact unique
users) through Trino on the aggregates, as `analyst`, next to the same question on `lake.events`: over whole months
from the monthly rollup (`bi.monthly_event_usage`, the figure with the target), and by days from the daily
aggregates (`bi.event_usage`, what a range starting or ending mid-month reads; shown for context).
Usage: .venv/bin/python benchmarks/question.py [--events N] [--days D] [--types T] [--repeat R] [--keep]
[--json PATH]; prints a table, then all figures as one JSON line.

The history (N events over D days, default six months) is written straight into `events` by benchmarks/history.py
(no JSON, no ingest), aggregated by `aggregate` for all its days, and published; both queries must give the same
answer, and Trino must count every event written, before any time is reported. The question asks about the
busiest type and the second country: a large share of the history, the hard case for both."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from common import (
    BenchmarkError,
    Interleaved,
    add_output_arguments,
    figure,
    interleaved,
    lake_env,
    machine,
    median,
    published,
    run_in_work_folder,
    settings_for,
    spread,
    steps,
    trino_rss_mib,
    trino_runner,
)
from history import History, type_specs, write_history

from lakehouse.aggregate import aggregate
from lakehouse.config import Settings
from lakehouse.dates import month_days
from lakehouse.session import spark_session
from lakehouse.trino_client import ANALYST

START = date(2024, 1, 1)
SIX_MONTHS = 182
COUNTRY = "DE"
MAX_MS = 1000  # the typical question answers within a second...
MIN_SPEEDUP = 10  # ...and at least ten times faster than from `events`
FULL_SIZE = 100_000_000
# Rounds of both queries run untimed after the first (cold) one: Trino's JIT compiles the scan, filter and
# aggregation code over a server's first queries; a BI server answers its users long after that.
WARMUP_ROUNDS = 3


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--events", type=int, default=FULL_SIZE, help=f"events of history (default {FULL_SIZE})")
    add("--days", type=int, default=SIX_MONTHS, help=f"days of history, the question's range (default {SIX_MONTHS})")
    add("--types", type=int, default=20, help="event types: each day has types x 24 files (default 20)")
    add("--users", type=int, default=1_000_000, help="distinct users (default 1000000)")
    add("--repeat", type=int, default=5, help="timed runs of each query after a warm-up (default 5)")
    add_output_arguments(parser)
    args = parser.parse_args()
    if min(args.days, args.repeat, args.users) < 1 or args.events < args.days or not 1 <= args.types <= 1000:
        parser.error("--days, --repeat and --users must be at least 1, --events at least --days, --types 1-1000")
    return args


def built(settings: Settings, history: History) -> dict[str, float]:
    """Writes the history and aggregates all its days; the seconds of each. The Spark session is stopped
    afterwards so that it takes no memory or CPU from Trino."""
    spark = spark_session(settings)
    try:
        seconds = {"history": write_history(spark, settings, history).seconds}
        started = time.perf_counter()
        summary = aggregate(settings, history.days_list())
        seconds["aggregate"] = time.perf_counter() - started
    finally:
        spark.stop()
    if len(summary["days"]) != history.days:
        raise BenchmarkError(f"aggregate rebuilt {len(summary['days'])} days, not the {history.days} of the history")
    return seconds


def whole_months(first: date, last: date) -> tuple[date, date]:
    """The first and last day of the whole calendar months from `first` to `last`."""
    start = first if first.day == 1 else month_days(first.replace(day=1))[-1] + timedelta(days=1)
    end = last if last == month_days(last.replace(day=1))[-1] else last.replace(day=1) - timedelta(days=1)
    if end < start:
        raise BenchmarkError(f"no whole month from {first} to {last}: give --days of at least two months")
    return start, end


def questions(event_type: str, first: date, last: date) -> dict[str, str]:
    """The question asked of the aggregates (the `bi` views, by months and by days) and of `events`, and the rows
    of each aggregate table it reads."""
    kind = f"event_type = '{event_type}' AND country = '{COUNTRY}'"
    days = f"WHERE {kind} AND event_date BETWEEN DATE '{first}' AND DATE '{last}'"
    months = f"WHERE {kind} AND event_month BETWEEN DATE '{first}' AND DATE '{last.replace(day=1)}'"
    asked = "SELECT sum(events) AS events, count(DISTINCT user_id) AS users"
    return {
        "monthly": f"{asked} FROM bi.monthly_event_usage {months}",
        "daily": f"{asked} FROM bi.event_usage {days}",
        "events": f"SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM lake.events {days}",
        "daily rows": f"SELECT count(*) FROM lake.daily_user_activity {days}",
        "monthly rows": f"SELECT count(*) FROM lake.monthly_user_activity {months}",
    }


def measure(settings: Settings, history: History, repeat: int) -> tuple[Interleaved, dict[str, int]]:
    """The queries' runs, taken in turns once Trino counts every event of the history in `events` and in both
    aggregates; they must all give the same answer. With the rows of each aggregate table the question reads."""
    as_pipeline, as_analyst = trino_runner(settings), trino_runner(settings, ANALYST)
    written = history.days * history.events_per_day
    [(in_events,)] = as_pipeline("SELECT count(*) FROM lake.events")
    [(by_days,)] = as_analyst("SELECT sum(events) FROM bi.event_usage")
    [(by_months,)] = as_analyst("SELECT sum(events) FROM bi.monthly_event_usage")
    if not in_events == by_days == by_months == written:
        raise BenchmarkError(f"Trino counts {in_events:,} events, {by_days:,} by days and {by_months:,} by months, "
                             f"history wrote {written:,}")  # fmt: skip
    last = history.days_list()[-1]
    first, last = whole_months(last - timedelta(days=min(history.days, SIX_MONTHS) - 1), last)
    sql = questions(type_specs(history.types)[0][0], first, last)
    runners = {"monthly": as_analyst, "daily": as_analyst, "events": as_pipeline}
    measured = interleaved({name: (run, sql[name]) for name, run in runners.items()}, repeat, WARMUP_ROUNDS)
    if len({str(rows) for rows in measured.rows.values()}) != 1:
        raise BenchmarkError(f"the answers differ: {measured.rows}")
    read = {name: as_pipeline(sql[f"{name} rows"])[0][0] for name in ("daily", "monthly")}
    return measured, read


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Builds, aggregates and publishes the history, then times the question on both tables."""
    env = lake_env(work)
    settings = settings_for(env)
    history = History(START, args.days, args.events // args.days, args.types, args.users)
    events = history.days * history.events_per_day
    print(f"{machine()} | {events:,} events over {args.days} days, {args.types} types, {args.users:,} users",
          flush=True)  # fmt: skip
    setup = built(settings, history)
    with published(env, setup):
        measured, read = measure(settings, history, args.repeat)
        rss = trino_rss_mib(settings.trino.state_dir)
    millis, cold = measured.millis, measured.cold_ms
    [(answer_events, answer_users)] = measured.rows["events"]
    speedup = {name: median(millis["events"]) / median(millis[name]) for name in ("monthly", "daily")}
    notes = [
        f"{events:,} events over {args.days} days ({args.types} types x 24 hours a day: "
        f"{args.days * args.types * 24:,} files in `events`); answer: {answer_events:,} events, {answer_users:,} "
        f"users, from {read['monthly']:,} monthly_user_activity rows or {read['daily']:,} daily_user_activity rows "
        f"({read['monthly'] / answer_events:.2f} and {read['daily'] / answer_events:.2f} per event)",
        f"Trino by months (bi.monthly_event_usage): {spread(millis['monthly'])} ms, {speedup['monthly']:.1f}x "
        f"faster; by days (bi.event_usage): {spread(millis['daily'])} ms, {speedup['daily']:.1f}x; on lake.events: "
        f"{spread(millis['events'])} ms (Trino RSS {rss:.0f} MiB)",
        f"runs taken in turns after {WARMUP_ROUNDS} untimed rounds; the first run of each on the fresh server: "
        f"{cold['monthly']:,.0f} ms by months, {cold['daily']:,.0f} ms by days, {cold['events']:,.0f} ms on events",
        f"setup: {steps(setup)}",
    ]
    print("\n".join(notes))
    passed = median(millis["monthly"]) <= MAX_MS and speedup["monthly"] >= MIN_SPEEDUP
    asked = f"typical BI question, {args.days} days of {events:,} events"
    rows = [
        figure(f"{asked} (Trino on the monthly rollup)", "ms", millis["monthly"], "Trino on lake.events",
               millis["events"], f"≤ {MAX_MS} ms and ≥ {MIN_SPEEDUP}× faster than reference", passed,
               speedup["monthly"]),
        figure(f"{asked} by days (Trino on the daily aggregates)", "ms", millis["daily"], "Trino on lake.events",
               millis["events"], "— (a range that starts or ends mid-month)", None, speedup["daily"]),
    ]  # fmt: skip
    return {"benchmark": "question", "events": events, "days": args.days, "types": args.types, "users": args.users,
            "repeat": args.repeat, "setup_seconds": {step: round(s, 1) for step, s in setup.items()},
            "answer": {"events": answer_events, "users": answer_users}, "rows_read": read, "millis": millis,
            "cold_ms": {name: round(ms, 1) for name, ms in cold.items()},
            "trino_rss_mib": round(rss), "figures": rows, "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("question", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
