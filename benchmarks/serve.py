"""Serving latency: the typical BI questions through Trino (the `bi` views, as `analyst`) on a lake the real pipeline
built, next to DuckDB running the same view definitions over the same Delta tables' files. Usage:
.venv/bin/python benchmarks/serve.py [--events N] [--days D] [--repeat R] [--keep] [--json PATH]; prints a table,
then all figures as one JSON line."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
from common import (
    BenchmarkError,
    add_output_arguments,
    figure,
    lake_env,
    lakehouse,
    machine,
    published,
    run_in_work_folder,
    settings_for,
    timed,
    trino_rss_mib,
    trino_runner,
)
from deltalake import DeltaTable

from lakehouse import tables
from lakehouse.config import Settings
from lakehouse.generate import generate
from lakehouse.trino_client import ANALYST, query

START = date(2024, 3, 1)
MAX_MS = 1000  # a BI question through Trino answers within a second
# The `bi` view files, made DuckDB SQL: no COMMENT or SECURITY clause (DuckDB has neither in CREATE VIEW).
TRINO_ONLY_CLAUSES = re.compile(r"\s+COMMENT\s+'(?:[^']|'')*'|\s+SECURITY\s+INVOKER", re.IGNORECASE)


def parsed_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="events to generate (default 500000)")
    parser.add_argument("--days", type=int, default=30, help="days they spread over (default 30)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each question (default 20)")
    add_output_arguments(parser)
    args = parser.parse_args()
    if min(args.events, args.days, args.repeat) < 1:
        parser.error("--events, --days and --repeat must be at least 1")
    return args


def questions(settings: Settings, days: int) -> dict[str, str]:
    """The typical questions, about the busiest type and country and the most active user of the lake."""
    busiest = ("SELECT event_type, country FROM bi.daily_event_usage WHERE country IS NOT NULL GROUP BY 1, 2 "
               "ORDER BY sum(events) DESC LIMIT 1")  # fmt: skip
    [(event_type, country)] = query(settings, busiest, ANALYST).rows
    [(user,)] = query(settings, "SELECT user_id FROM bi.user_daily_activity GROUP BY 1 ORDER BY sum(events) DESC "
                                "LIMIT 1", ANALYST).rows  # fmt: skip
    last = START + timedelta(days=days - 1)
    week = f"event_date BETWEEN DATE '{last - timedelta(days=6)}' AND DATE '{last}'"
    asked = "SELECT sum(events) AS events, count(DISTINCT user_id) AS users FROM bi"
    kind = f"WHERE event_type = '{event_type}' AND country = '{country}' AND"
    typical = f"{asked}.event_usage {kind} "
    return {
        "type+country, last 7 days": typical + week,
        f"type+country, all {days} days": typical + f"event_date >= DATE '{START}'",
        "type+country, first month (monthly view)": f"{asked}.monthly_event_usage {kind} event_month = DATE '{START}'",
        "per-day series of a type": "SELECT event_date, sum(events), sum(unique_users) FROM bi.daily_event_usage "
        f"WHERE event_type = '{event_type}' GROUP BY 1 ORDER BY 1",
        "one user's daily activity": f"SELECT * FROM bi.user_daily_activity WHERE user_id = '{user}' ORDER BY 2",
        "one user's history, last 7 days": f"SELECT * FROM bi.user_event_history WHERE user_id = '{user}' AND {week} "
        "ORDER BY 2, 3, 4",
    }


def duckdb_lake(settings: Settings, cores: int) -> duckdb.DuckDBPyConnection:
    """DuckDB with schema `lake` (the active files of each gold table, as delta-rs lists them) and schema `bi` (the
    view files of sql/)."""
    con = duckdb.connect()
    con.execute(f"SET threads = {cores}; SET TimeZone = 'UTC'; CREATE SCHEMA lake; CREATE SCHEMA bi")
    for name in tables.GOLD:
        files = DeltaTable(str(Path(settings.lake.root) / name)).file_uris()
        con.execute(f"CREATE VIEW lake.{name} AS SELECT * FROM read_parquet({files!r}, hive_partitioning = true)")
    for path in sorted(Path(settings.trino.views_dir).glob("*.sql")):
        con.execute(TRINO_ONLY_CLAUSES.sub("", path.read_text()))
    return con


def comparable(rows: list) -> list[tuple]:
    """Rows with timestamps as epoch milliseconds (naive ones taken as UTC), so both engines' answers compare."""
    return [tuple(_millis(value) if isinstance(value, datetime) else value for value in row) for row in rows]


def _millis(moment: datetime) -> int:
    return round(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)


def latency(millis: list[float]) -> dict:
    ordered = sorted(millis)
    return {"median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * len(ordered)))], 1),
            "ms": [round(value, 1) for value in millis]}  # fmt: skip


def measure(settings: Settings, asked: dict[str, str], repeat: int, cores: int) -> dict[str, dict]:
    """Per question: Trino's and DuckDB's latencies, after checking they give the same answer."""
    trino_rows, con = trino_runner(settings, ANALYST), duckdb_lake(settings, cores)
    figures = {}
    for name, sql in asked.items():
        trino, trino_ms = timed(trino_rows, sql, repeat)
        duck, duck_ms = timed(lambda text: con.sql(text).fetchall(), sql, repeat)
        if comparable(trino) != comparable(duck):
            raise BenchmarkError(f"{name}: Trino and DuckDB disagree on\n{sql}")
        figures[name] = {"rows": len(trino), "trino": latency(trino_ms), "duckdb": latency(duck_ms)}
    return figures


def table(figures: dict[str, dict]) -> list[str]:
    lines = [f"{'question':36} {'rows':>5} {'Trino median':>13} {'p95':>7} {'DuckDB median':>14} {'p95':>7}"]
    for name, f in figures.items():
        trino, duck = f["trino"], f["duckdb"]
        lines.append(f"{name:36} {f['rows']:>5} {trino['median_ms']:>10.1f} ms {trino['p95_ms']:>7.1f} "
                     f"{duck['median_ms']:>11.1f} ms {duck['p95_ms']:>7.1f}")  # fmt: skip
    return lines


def rows(figures: dict[str, dict]) -> list[dict]:
    """The RESULTS.md rows: each question's Trino latency next to DuckDB's on the same files."""
    result = []
    for name, f in figures.items():
        trino, duck = f["trino"], f["duckdb"]
        result.append(figure(f"serve: {name} (Trino, bi views)", "ms", trino["ms"], "DuckDB, same views and files",
                             duck["ms"], f"≤ {MAX_MS} ms", trino["median_ms"] <= MAX_MS,
                             trino["median_ms"] / duck["median_ms"]))  # fmt: skip
    return result


def benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Builds the lake with the real commands, starts Trino, publishes, then times each question on both engines."""
    env, cores = lake_env(work), os.cpu_count() or 1
    settings = settings_for(env)
    generate(work / "lake" / "landing", args.events, days=args.days, start=START, types=40, bad_rate=0.01,
             dup_rate=0.02, seed=7)  # fmt: skip
    seconds = {step: lakehouse(env, *step.split()).seconds for step in ("ingest", "aggregate")}
    with published(env, seconds):
        figures = measure(settings, questions(settings, args.days), args.repeat, cores)
        rss = trino_rss_mib(settings.trino.state_dir)
    notes = table(figures) + [
        f"(ms per query over {args.repeat} runs after a warm-up; both engines gave the same rows; {args.events:,} "
        f"events over {args.days} days; Trino RSS {rss:.0f} MiB)"
    ]
    print("\n".join(notes))
    return {"benchmark": "serve", "cores": cores, "events": args.events, "days": args.days, "repeat": args.repeat,
            "setup_seconds": {step: round(s, 1) for step, s in seconds.items()}, "trino_rss_mib": round(rss),
            "load_1min": round(os.getloadavg()[0], 1), "results": figures, "figures": rows(figures),
            "notes": notes}  # fmt: skip


def main() -> int:
    args = parsed_args()
    print(machine(), flush=True)
    return run_in_work_folder("serve", benchmark, args, None)


if __name__ == "__main__":
    sys.exit(main())
