"""The typical BI question (DESIGN §5: one event type in one country over six months, its events and exact unique
users) through Trino on the aggregates (`bi.event_usage`, as `analyst`), next to the same question on `lake.events`.
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
from lakehouse.session import spark_session
from lakehouse.trino import ANALYST

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


def questions(event_type: str, first: date, last: date) -> dict[str, str]:
    """The question asked of the aggregates (the `bi` view) and of `events`, and the count of the
    `daily_user_activity` rows it reads."""
    where = (f"WHERE event_type = '{event_type}' AND country = '{COUNTRY}' "
             f"AND event_date BETWEEN DATE '{first}' AND DATE '{last}'")  # fmt: skip
    return {
        "aggregates": f"SELECT sum(events) AS events, count(DISTINCT user_id) AS users FROM bi.event_usage {where}",
        "events": f"SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM lake.events {where}",
        "activity rows": f"SELECT count(*) FROM lake.daily_user_activity {where}",
    }


def measure(settings: Settings, history: History, repeat: int) -> tuple[Interleaved, int]:
    """Both queries' runs, taken in turns once Trino counts every event of the history in both `events` and the
    aggregates; they must give the same answer. With the `daily_user_activity` rows the question reads."""
    as_pipeline, as_analyst = trino_runner(settings), trino_runner(settings, ANALYST)
    written = history.days * history.events_per_day
    [(in_events,)] = as_pipeline("SELECT count(*) FROM lake.events")
    [(in_aggregates,)] = as_analyst("SELECT sum(events) FROM bi.event_usage")
    if not in_events == in_aggregates == written:
        raise BenchmarkError(f"Trino counts {in_events:,} events and {in_aggregates:,} aggregated, history wrote "
                             f"{written:,}")  # fmt: skip
    last = history.days_list()[-1]
    sql = questions(type_specs(history.types)[0][0], last - timedelta(days=min(history.days, SIX_MONTHS) - 1), last)
    measured = interleaved({"aggregates": (as_analyst, sql["aggregates"]), "events": (as_pipeline, sql["events"])},
                           repeat, WARMUP_ROUNDS)  # fmt: skip
    if measured.rows["aggregates"] != measured.rows["events"]:
        raise BenchmarkError(f"the aggregates answer {measured.rows['aggregates']}, events {measured.rows['events']}")
    [(activity_rows,)] = as_pipeline(sql["activity rows"])
    return measured, activity_rows


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
        measured, activity_rows = measure(settings, history, args.repeat)
        rss = trino_rss_mib(settings.trino.state_dir)
    millis, cold = measured.millis, measured.cold_ms
    [(answer_events, answer_users)] = measured.rows["events"]
    speedup = median(millis["events"]) / median(millis["aggregates"])
    notes = [
        f"{events:,} events over {args.days} days ({args.types} types x 24 hours a day: "
        f"{args.days * args.types * 24:,} files in `events`); answer: {answer_events:,} events, {answer_users:,} "
        f"users, from {activity_rows:,} daily_user_activity rows ({activity_rows / answer_events:.2f} per event)",
        f"Trino on the aggregates (bi.event_usage): {spread(millis['aggregates'])} ms; on lake.events: "
        f"{spread(millis['events'])} ms; {speedup:.1f}x faster (Trino RSS {rss:.0f} MiB)",
        f"runs taken in turns after {WARMUP_ROUNDS} untimed rounds; the first run of each on the fresh server: "
        f"{cold['aggregates']:,.0f} ms on the aggregates, {cold['events']:,.0f} ms on events",
        f"setup: {steps(setup)}",
    ]
    print("\n".join(notes))
    passed = median(millis["aggregates"]) <= MAX_MS and speedup >= MIN_SPEEDUP
    row = figure(f"typical BI question, {args.days} days of {events:,} events (Trino on the aggregates)", "ms",
                 millis["aggregates"], "Trino on lake.events", millis["events"],
                 f"≤ {MAX_MS} ms and ≥ {MIN_SPEEDUP}× faster than reference", passed, speedup)  # fmt: skip
    return {"benchmark": "question", "events": events, "days": args.days, "types": args.types, "users": args.users,
            "repeat": args.repeat, "setup_seconds": {step: round(s, 1) for step, s in setup.items()},
            "answer": {"events": answer_events, "users": answer_users}, "activity_rows": activity_rows,
            "millis": millis,
            "cold_ms": {name: round(ms, 1) for name, ms in cold.items()},
            "trino_rss_mib": round(rss), "figures": [row], "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("question", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
