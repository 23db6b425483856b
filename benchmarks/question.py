"""The typical BI question (DESIGN §5: one event type in one country over six months, its events and exact unique
users) through Trino on the aggregates, as `analyst`, next to the same question on `lake.events`: over whole months
from the monthly rollup (`bi.monthly_event_usage`), and over a range from mid-month to mid-month with the whole
months in between from the rollup and the edges by days (`questions.usage_query`); both figures have the target.
All by days from the daily aggregates (`bi.event_usage`) is shown for context.
Usage: .venv/bin/python benchmarks/question.py [--events N] [--days D] [--types T] [--repeat R] [--keep]
[--json PATH]; prints a table, then all figures as one JSON line.

The history (N events over D days, default six months) is written straight into `events` by benchmarks/history.py
(no JSON, no ingest), aggregated by `aggregate` for all its days, and published; the three queries of each range
must give the same answer, and Trino must count every event written, before any time is reported. The question asks
about the busiest type and the second country: a large share of the history, the hard case for all."""

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
from lakehouse.questions import usage_query, whole_months
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
# The range that starts and ends mid-month: these many days after the first whole month begins, and before the last
# one ends (six months from January: Jan 15 to Jun 10).
MID_MONTH_DAYS = (14, 20)


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
    """The question asked of the aggregates and of `events` over the whole months from `first` to `last`
    (`bi.monthly_event_usage`, and by days `bi.event_usage`), and over a range from mid-month to mid-month
    (`questions.usage_query`: the whole months in between from the rollup, the edges by days); with the rows of
    each aggregate table the whole-month question reads."""
    kind = f"event_type = '{event_type}' AND country = '{COUNTRY}'"
    days = f"WHERE {kind} AND event_date BETWEEN DATE '{first}' AND DATE '{last}'"
    months = f"WHERE {kind} AND event_month BETWEEN DATE '{first}' AND DATE '{last.replace(day=1)}'"
    asked = "SELECT sum(events) AS events, count(DISTINCT user_id) AS users"
    on_events = "SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM lake.events"
    mid_first, mid_last = first + timedelta(days=MID_MONTH_DAYS[0]), last - timedelta(days=MID_MONTH_DAYS[1])
    mid_days = f"WHERE {kind} AND event_date BETWEEN DATE '{mid_first}' AND DATE '{mid_last}'"
    return {
        "monthly": f"{asked} FROM bi.monthly_event_usage {months}",
        "daily": f"{asked} FROM bi.event_usage {days}",
        "events": f"{on_events} {days}",
        "any range": usage_query(event_type, COUNTRY, mid_first, mid_last),
        "any range by days": f"{asked} FROM bi.event_usage {mid_days}",
        "any range on events": f"{on_events} {mid_days}",
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
    months = whole_months(last - timedelta(days=min(history.days, SIX_MONTHS) - 1), last)
    if months is None or months[0] == months[1]:
        raise BenchmarkError(f"fewer than two whole months of history up to {last}: give --days of at least three")
    first, last = months[0], month_days(months[1])[-1]
    sql = questions(type_specs(history.types)[0][0], first, last)
    runners = {"monthly": as_analyst, "daily": as_analyst, "events": as_pipeline, "any range": as_analyst,
               "any range by days": as_analyst, "any range on events": as_pipeline}  # fmt: skip
    measured = interleaved({name: (run, sql[name]) for name, run in runners.items()}, repeat, WARMUP_ROUNDS)
    for group in (("monthly", "daily", "events"), ("any range", "any range by days", "any range on events")):
        if len({str(measured.rows[name]) for name in group}) != 1:
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
    speedup |= {name: median(millis["any range on events"]) / median(millis[name])
                for name in ("any range", "any range by days")}  # fmt: skip
    [(mid_events, mid_users)] = measured.rows["any range on events"]
    notes = [
        f"{events:,} events over {args.days} days ({args.types} types x 24 hours a day: "
        f"{args.days * args.types * 24:,} files in `events`); answer: {answer_events:,} events, {answer_users:,} "
        f"users, from {read['monthly']:,} monthly_user_activity rows or {read['daily']:,} daily_user_activity rows "
        f"({read['monthly'] / answer_events:.2f} and {read['daily'] / answer_events:.2f} per event)",
        f"Trino by months (bi.monthly_event_usage): {spread(millis['monthly'])} ms, {speedup['monthly']:.1f}x "
        f"faster; by days (bi.event_usage): {spread(millis['daily'])} ms, {speedup['daily']:.1f}x; on lake.events: "
        f"{spread(millis['events'])} ms (Trino RSS {rss:.0f} MiB)",
        f"mid-month range ({MID_MONTH_DAYS[0]} days into the first whole month to {MID_MONTH_DAYS[1]} days before the "
        f"last one ends; answer: {mid_events:,} events, {mid_users:,} users): whole months from the rollup and the "
        f"edges by days (questions.usage_query) {spread(millis['any range'])} ms, {speedup['any range']:.1f}x faster; "
        f"all by days {spread(millis['any range by days'])} ms, {speedup['any range by days']:.1f}x; on lake.events "
        f"{spread(millis['any range on events'])} ms",
        f"runs taken in turns after {WARMUP_ROUNDS} untimed rounds; the first run of each on the fresh server: "
        f"{cold['monthly']:,.0f} ms by months, {cold['daily']:,.0f} ms by days, {cold['events']:,.0f} ms on events",
        f"setup: {steps(setup)}",
    ]
    print("\n".join(notes))
    passed = {name: median(millis[name]) <= MAX_MS and speedup[name] >= MIN_SPEEDUP
              for name in ("monthly", "any range")}  # fmt: skip
    target = f"≤ {MAX_MS} ms and ≥ {MIN_SPEEDUP}× faster than reference"
    asked = f"typical BI question, {args.days} days of {events:,} events"
    mid = f"typical BI question, a mid-month range of {events:,} events"
    rows = [
        figure(f"{asked} (Trino on the monthly rollup)", "ms", millis["monthly"], "Trino on lake.events",
               millis["events"], target, passed["monthly"], speedup["monthly"]),
        figure(f"{mid} (whole months from the rollup, the edges by days)", "ms", millis["any range"],
               "Trino on lake.events", millis["any range on events"], target, passed["any range"],
               speedup["any range"]),
        figure(f"{mid}, all by days (Trino on the daily aggregates)", "ms", millis["any range by days"],
               "Trino on lake.events", millis["any range on events"], "— (for context)", None,
               speedup["any range by days"]),
    ]  # fmt: skip
    return {"benchmark": "question", "events": events, "days": args.days, "types": args.types, "users": args.users,
            "repeat": args.repeat, "setup_seconds": {step: round(s, 1) for step, s in setup.items()},
            "answer": {"events": answer_events, "users": answer_users},
            "mid_month_answer": {"events": mid_events, "users": mid_users}, "rows_read": read, "millis": millis,
            "cold_ms": {name: round(ms, 1) for name, ms in cold.items()},
            "trino_rss_mib": round(rss), "figures": rows, "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    return run_in_work_folder("question", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
