"""The `lakehouse` command: parses arguments, loads settings, runs one job, prints its result."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

from lakehouse.config import DEFAULT_CONF, Settings, load_settings
from lakehouse.errors import LakehouseError
from lakehouse.writer_lock import WRITERS, writer_lock

# `ingest --watch`: the default seconds between looks at landing, and between two heartbeats on stderr.
WATCH_INTERVAL = 5.0
HEARTBEAT_SECONDS = 60


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line naming the problem, instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


for _type, _name in ((_positive, "a whole number"), (_rate, "a rate"), (_day, "a date"), (_seconds, "seconds")):
    _type.__name__ = _name


def _parser() -> _Parser:
    parser = _Parser(prog="lakehouse", description="Event lakehouse: Spark + Delta Lake + GX + Trino + Airflow.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", default=DEFAULT_CONF, help=f"settings file (default {DEFAULT_CONF})")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    generate = commands.add_parser("generate", parents=[common], help="write synthetic event files")
    generate.add_argument("--out", required=True, help="folder to write the files to")
    generate.add_argument("--events", type=_positive, required=True, help="lines to write")
    generate.add_argument("--days", type=_positive, default=1, help="days of events (default 1)")
    generate.add_argument("--start", type=_day, help="first day, YYYY-MM-DD (default: DAYS days before today)")
    generate.add_argument("--users", type=_positive, default=10_000, help="distinct users (default 10000)")
    generate.add_argument("--types", type=_positive, default=300, help="distinct event types (default 300)")
    generate.add_argument("--bad-rate", type=_rate, default=0.0, help="share of malformed lines (default 0)")
    generate.add_argument("--dup-rate", type=_rate, default=0.0, help="share of re-sent events (default 0)")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--gzip", action="store_true", help="write .jsonl.gz files")

    ingest = commands.add_parser("ingest", parents=[common], help="landing files → events, quarantine, ingest_runs")
    ingest.add_argument("--watch", action="store_true", help="keep running: ingest files as they land, in one warm "
                        "Spark session, until SIGTERM or SIGINT (which let the running batch end)")  # fmt: skip
    ingest.add_argument("--interval", type=_seconds, help=f"with --watch: seconds between looks at landing "
                        f"(default {WATCH_INTERVAL:g})")  # fmt: skip
    aggregate = commands.add_parser("aggregate", parents=[common], help="events → the daily gold tables")
    days = aggregate.add_mutually_exclusive_group()
    days.add_argument("--date", type=_day, help="rebuild this day (default: days ingest touched since the last run)")
    days.add_argument("--from", dest="first", type=_day, help="rebuild the days from this one (with --to)")
    aggregate.add_argument("--to", dest="last", type=_day, help="... to this one, included")

    validate = commands.add_parser("validate", parents=[common], help="run a table's quality suite (exit 1 on failure)")
    validate.add_argument(
        "table",
        help="events, quarantine or a gold table (daily_user_activity, daily_event_stats, monthly_user_activity)",
    )
    validate.add_argument("--date", type=_day, help="validate this day's rows (default: the rows last written)")

    run = commands.add_parser("run", parents=[common], help="the whole pipeline (sample data if landing is empty)")
    run.add_argument("--sample-events", type=_positive, help="lines of sample data when landing is empty (default "
                     "200000)")  # fmt: skip
    trino = commands.add_parser("trino", parents=[common], help="manage the local Trino server")
    trino.add_argument("action", choices=("start", "stop", "status"))
    commands.add_parser("publish", parents=[common], help="register the lake's tables and the sql/ views in Trino")
    sql = commands.add_parser("sql", parents=[common], help="run a query through Trino and print the result")
    sql.add_argument("query", help="one statement in Trino SQL")
    sql.add_argument("--user", help="the Trino user to run it as (default: trino.user of the settings)")
    commands.add_parser("airflow", parents=[common], help="run Airflow locally (standalone) with the DAGs of dags/")
    commands.add_parser("maintain", parents=[common], help="compact small files, cluster events by user, vacuum")
    forget = commands.add_parser("forget-user", parents=[common], help="remove one user's data from the whole lake")
    forget.add_argument("user_id", metavar="USER_ID", help="the user_id whose events to remove")
    forget.add_argument("--requested-by", help="who asked, for the record (default: the OS user running this)")
    return parser


def _generate(args: argparse.Namespace, _settings: Settings) -> None:
    from lakehouse.generate import EARLIEST_START, generate

    today = datetime.now(UTC).date()
    if args.start is None and args.days > (today - EARLIEST_START).days:
        raise LakehouseError(f"--days {args.days} without --start starts before {EARLIEST_START}: give --start")
    start = args.start or today - timedelta(days=args.days)
    try:
        summary = generate(
            args.out,
            args.events,
            days=args.days,
            start=start,
            users=args.users,
            types=args.types,
            bad_rate=args.bad_rate,
            dup_rate=args.dup_rate,
            seed=args.seed,
            compress=args.gzip,
        )
    except (ValueError, OSError) as exc:  # a bad argument; the output folder or a file in it, named in the message
        raise LakehouseError(str(exc)) from None
    print(
        json.dumps(
            {
                "files": len(summary.files),
                "lines": summary.lines,
                "valid": summary.valid,
                "duplicates": summary.duplicates,
                "bad": summary.bad,
            }
        )
    )


def _ingest(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.ingest import ingest

    if args.interval is not None and not args.watch:
        raise LakehouseError("--interval goes with --watch")
    if args.watch:
        _watch(settings, WATCH_INTERVAL if args.interval is None else args.interval)
        return
    for summary in ingest(settings):
        _print_batch(summary)


def _print_batch(summary: dict) -> None:
    print(json.dumps(summary), flush=True)
    for path, error in summary.get("set_aside", {}).items():
        print(f"lakehouse: warning: landing file {path} set aside (unreadable_file): {error}", file=sys.stderr)
    for path in summary.get("deferred", []):
        print(f"lakehouse: warning: landing file {path} changed since it was planned: left for the next batch",
              file=sys.stderr)  # fmt: skip


def _watch(settings: Settings, interval: float) -> None:
    """`ingest --watch`: a batch's summary on stdout as it ends; on stderr a heartbeat at the first idle look and at
    most every HEARTBEAT_SECONDS after; SIGTERM and SIGINT stop it between batches."""
    from lakehouse.ingest import watch
    from lakehouse.session import spark_session

    # Started before the handlers: pyspark sets a SIGINT handler of its own (cancel every job) as it starts.
    spark_session(settings)
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    batches, events, beat = 0, 0, None
    print(f"lakehouse: watching {settings.lake.root}/landing every {interval:g} s", file=sys.stderr, flush=True)
    for summary in watch(settings, interval, stopping, lambda: writer_lock(settings, "lakehouse ingest --watch")):
        if summary is not None:
            _print_batch(summary)
            batches, events = batches + 1, events + summary["valid"]
        elif beat is None or time.monotonic() - beat >= HEARTBEAT_SECONDS:
            beat = time.monotonic()
            print(f"lakehouse: watching: {batches} batches, {events} events since start; "
                  f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} idle", file=sys.stderr, flush=True)  # fmt: skip
    print(f"lakehouse: stopped watching after {batches} batches, {events} events", file=sys.stderr, flush=True)


def _aggregate(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.aggregate import aggregate
    from lakehouse.dates import day_range

    if (args.first is None) != (args.last is None):
        raise LakehouseError("--from and --to go together")
    days = [args.date] if args.date else day_range(args.first, args.last) if args.first else None
    print(json.dumps(aggregate(settings, days)))


def _validate(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.quality import validate

    print(json.dumps(validate(settings, args.table, args.date), default=str))


def _run(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.run import run

    run(settings, say=lambda line: print(line, flush=True), sample_events=args.sample_events)


def _trino(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.trino_server import control

    print(control(settings, args.action))


def _publish(_args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.publish import publish

    print(json.dumps(publish(settings)))


def _sql(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.trino_client import query

    print(query(settings, args.query, args.user).as_table())


def _airflow(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.airflow_local import standalone

    standalone(settings, args.conf)


def _maintain(_args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.maintain import maintain

    print(json.dumps(maintain(settings)))


def _forget_user(args: argparse.Namespace, settings: Settings) -> None:
    from lakehouse.forget import forget

    print(json.dumps(forget(settings, args.user_id, args.requested_by)))


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "generate": _generate,
    "ingest": _ingest,
    "aggregate": _aggregate,
    "validate": _validate,
    "run": _run,
    "trino": _trino,
    "publish": _publish,
    "sql": _sql,
    "airflow": _airflow,
    "maintain": _maintain,
    "forget-user": _forget_user,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; user errors print one line on stderr and give exit code 2, a failed quality gate 1."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.conf)
        # A watcher takes the lock for each look at landing instead, so other writers get their turns.
        locked = args.command in WRITERS and not getattr(args, "watch", False)
        with writer_lock(settings, f"lakehouse {args.command}") if locked else nullcontext():
            _COMMANDS[args.command](args, settings)
    except LakehouseError as exc:
        print(f"lakehouse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
