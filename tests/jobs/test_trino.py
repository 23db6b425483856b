"""The local Trino server: its lifecycle, `lakehouse trino|sql|publish` as a user runs them, the stock clients, and
the access rules (DESIGN §5), all against a real server."""

from __future__ import annotations

import os
import socket
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.trino_client import ANALYST, QueryError, Result, query
from lakehouse.trino_server import start, status, stop
from tests.conftest import SERVED_DAYS, free_port
from tests.conftest import test_environ as environment_for
from tests.jobs.test_cli import lakehouse

ALLOWED_TO_ANALYST = [
    "SELECT count(*) FROM bi.event_usage",
    "SELECT count(*) FROM bi.daily_event_usage",
    "SELECT count(*) FROM bi.user_daily_activity",
    "SELECT count(*) FROM bi.user_event_history",
    "SELECT count(*) FROM lake.daily_user_activity",
    "SELECT count(*) FROM lake.daily_event_stats",
    "SELECT count(*) FROM lake.monthly_user_activity",
    "SELECT count(*) FROM bi.monthly_event_usage",
]
DENIED_TO_ANALYST = [
    ("SELECT count(*) FROM lake.quarantine", "Cannot select from table lakehouse.lake.quarantine"),
    # The gold tables' metadata tables: their history names every commit (forget-user's too) and its parameters.
    ('SELECT count(*) FROM lake."daily_user_activity$history"',
     "Cannot select from table lakehouse.lake.daily_user_activity$history"),
    ('SELECT count(*) FROM lake."daily_event_stats$properties"',
     "Cannot select from table lakehouse.lake.daily_event_stats$properties"),
    ('SELECT count(*) FROM lake."monthly_user_activity$partitions"',
     "Cannot select from table lakehouse.lake.monthly_user_activity$partitions"),
    ("SET SESSION query_max_memory = '1GB'", "Cannot set system session property query_max_memory"),
    ("SET SESSION lakehouse.parquet_use_column_index = false",
     "Cannot set catalog session property parquet_use_column_index"),
    ("SELECT count(*) FROM lake.events", "Cannot select from table lakehouse.lake.events"),
    ("SELECT count(*) FROM lake.ingest_runs", "Cannot select from table lakehouse.lake.ingest_runs"),
    ("INSERT INTO lake.daily_event_stats SELECT * FROM lake.daily_event_stats",
     "Cannot insert into table lakehouse.lake.daily_event_stats"),
    ("DELETE FROM lake.daily_user_activity", "Cannot delete from table lakehouse.lake.daily_user_activity"),
    ("CREATE TABLE bi.copy AS SELECT * FROM bi.event_usage", "Cannot create table lakehouse.bi.copy"),
    ("CREATE OR REPLACE VIEW bi.leak SECURITY DEFINER AS SELECT * FROM lake.quarantine",
     "Cannot create view lakehouse.bi.leak"),
    ("DROP VIEW bi.event_usage", "Cannot drop view lakehouse.bi.event_usage"),
    ("CREATE SCHEMA scratch", "Cannot create schema lakehouse.scratch"),
    ("CALL system.register_table(schema_name => 'bi', table_name => 'q', table_location => 'local:///quarantine')",
     "Cannot execute procedure lakehouse.system.register_table"),
]  # fmt: skip


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points `lakehouse` at the server and lake of `settings`."""
    port = {"LAKEHOUSE__TRINO__PORT": str(settings.trino.port)}
    return {**os.environ, **environment_for(Path(settings.lake.root)), **port, **extra}


def elsewhere(settings: Settings, tmp_path: Path, port: int) -> Settings:
    """`settings` for a server of its own (another state folder and port), installed in the same place."""
    update = {"state_dir": str(tmp_path / "trino"), "port": port}
    return settings.model_copy(update={"trino": settings.trino.model_copy(update=update)})


def test_result_prints_as_an_aligned_table() -> None:
    result = Result(["type", "events", "late", "note"],
                    [("login", 1200, True, None), ("purchase", Decimal("7.5"), False, "a\nb")])  # fmt: skip
    assert result.as_table() == (
        "  type   | events |  late | note\n"
        "---------+--------+-------+-----\n"
        "login    |   1200 | true  | NULL\n"
        "purchase |    7.5 | false | a\n"
        "         |        |       | b\n"
        "(2 rows)"
    )  # fmt: skip


def test_start_again_leaves_the_running_server_alone(trino_settings: Settings) -> None:
    running = status(trino_settings)
    assert start(trino_settings) == running
    assert status(trino_settings) == running
    assert running.pid is not None and running.current
    assert str(running).startswith(
        f"Trino is running (pid {running.pid}) at http://127.0.0.1:{trino_settings.trino.port}"
    )


def test_start_refuses_a_port_another_program_holds(trino_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(LakehouseError, match=rf"127.0.0.1:{trino_settings.trino.port} is taken by another program"):
        start(elsewhere(trino_settings, tmp_path, trino_settings.trino.port))


def test_stop_without_a_server_does_nothing(trino_settings: Settings, tmp_path: Path) -> None:
    idle = elsewhere(trino_settings, tmp_path, free_port())
    assert stop(idle) is None
    assert status(idle).pid is None
    assert status(trino_settings).pid is not None


def outside(settings: Settings, tmp_path: Path, port: int, timeout: int = 180) -> Settings:
    """`settings` for a server run outside lakehouse (`trino.managed` false) at `port`, with no state of its own."""
    update = {"managed": False, "start_timeout_seconds": timeout}
    moved = elsewhere(settings, tmp_path, port)
    return moved.model_copy(update={"trino": moved.trino.model_copy(update=update)})


def test_a_server_run_outside_is_only_waited_for(trino_settings: Settings, tmp_path: Path) -> None:
    remote = outside(trino_settings, tmp_path, trino_settings.trino.port)
    running = start(remote)
    assert (running.pid, running.managed) == (None, False)
    assert str(running).startswith(f"Trino at http://127.0.0.1:{trino_settings.trino.port} is run outside lakehouse")
    assert query(remote, "SELECT 1").rows == [(1,)]
    assert not (tmp_path / "trino").exists()
    with pytest.raises(LakehouseError, match="is run outside lakehouse .*: stop it there"):
        stop(remote)
    assert status(trino_settings).pid is not None


def test_a_server_run_outside_that_never_answers_fails_start(trino_settings: Settings, tmp_path: Path) -> None:
    silent = outside(trino_settings, tmp_path, free_port(), timeout=2)
    with pytest.raises(LakehouseError, match=r"Trino did not answer within 2 s \(run outside lakehouse at http"):
        start(silent)


def test_install_names_what_maven_could_not_fetch(trino_settings: Settings, tmp_path: Path) -> None:
    trino = trino_settings.trino.model_copy(update={"home": str(tmp_path / "home"), "version": 999})
    with pytest.raises(LakehouseError, match="fetch io.trino:trino-server:999:tar.gz: Unable to find artifact"):
        start(elsewhere(trino_settings.model_copy(update={"trino": trino}), tmp_path, free_port()))


def test_cli_manages_and_queries_the_server(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    settings, _ = served
    env = cli_env(settings)
    shown = lakehouse("trino", "status", env=env)
    assert shown.returncode == 0 and shown.stdout.startswith("Trino is running (pid "), shown.stderr
    sql = "SELECT event_date, sum(events) AS events FROM bi.daily_event_usage GROUP BY 1 ORDER BY 1"
    printed = lakehouse("sql", sql, "--user", ANALYST, env=env)
    # The oracle's events per day, printed as an aligned table (the layout: test_result_prints_as_an_aligned_table).
    per_day = sorted(Counter(event["event_date"] for event in served_events).items())
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == Result(["event_date", "events"], per_day).as_table() + "\n"
    assert len(per_day) == len(SERVED_DAYS)
    published = lakehouse("publish", env=env)
    assert published.returncode == 0 and '"registered": []' in published.stdout, published.stderr


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["sql", "SELECT count(*) FROM lake.quarantine", "--user", ANALYST], {},
         "lakehouse: error: Trino: Access Denied: Cannot select from table lakehouse.lake.quarantine"),
        (["sql", "SELECT nothing FROM lake.nowhere"], {},
         "lakehouse: error: Trino: line 1:21: Table 'lakehouse.lake.nowhere' does not exist"),
        (["sql", "SELECT 1"], {"LAKEHOUSE__TRINO__PORT": "1"}, "lakehouse: error: no Trino server answers at"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(served: tuple[Settings, dict], args: list[str], extra_env: dict, message: str) -> None:
    settings, _ = served
    done = lakehouse(*args, env=cli_env(settings, **extra_env))
    assert done.returncode == 2
    assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("sql", ALLOWED_TO_ANALYST)
def test_analyst_reads_bi_and_the_daily_tables(served: tuple[Settings, dict], sql: str) -> None:
    settings, _ = served
    [(count,)] = query(settings, sql, ANALYST).rows
    assert count > 0


@pytest.mark.parametrize(("sql", "message"), DENIED_TO_ANALYST)
def test_analyst_is_denied_everything_else(served: tuple[Settings, dict], sql: str, message: str) -> None:
    settings, _ = served
    with pytest.raises(QueryError) as denied:
        query(settings, sql, ANALYST)
    assert (denied.value.error_name, str(denied.value)) == ("PERMISSION_DENIED", f"Trino: Access Denied: {message}")


def test_analyst_sees_only_what_it_may_read(served: tuple[Settings, dict]) -> None:
    settings, _ = served
    assert query(settings, "SHOW SCHEMAS", ANALYST).rows == [("bi",), ("lake",)]
    assert query(settings, "SHOW TABLES FROM lake", ANALYST).rows == [
        ("daily_event_stats",), ("daily_user_activity",), ("monthly_user_activity",)
    ]  # fmt: skip


def test_other_users_may_not_even_query(served: tuple[Settings, dict]) -> None:
    settings, _ = served
    with pytest.raises(QueryError, match="Access Denied: Cannot execute query"):
        query(settings, "SELECT 1", "mallory")


def test_the_pipeline_user_reads_every_table(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """Every event the oracle found, the one broken line (`served_lines`), the one batch."""
    settings, _ = served
    expected = {"events": len(served_events), "quarantine": 1, "ingest_runs": 1}
    for name, rows in expected.items():
        [(count,)] = query(settings, f"SELECT count(*) FROM lake.{name}").rows
        assert count == rows > 0, name


def test_stock_sqlalchemy_client_runs_the_typical_query(
    served: tuple[Settings, dict], served_events: list[dict]
) -> None:
    settings, _ = served
    engine = create_engine(f"trino://{ANALYST}@{settings.trino.host}:{settings.trino.port}/lakehouse")
    sql = ("SELECT event_type, sum(events) AS events, count(DISTINCT user_id) AS users FROM bi.event_usage "
           "WHERE country = :country GROUP BY event_type ORDER BY events DESC")  # fmt: skip
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql), {"country": "DE"}).all()]
    in_de = [event for event in served_events if event["country"] == "DE"]
    events, users = Counter(event["event_type"] for event in in_de), defaultdict(set)
    for event in in_de:
        users[event["event_type"]] |= {event["user_id"]} - {None}
    assert sorted(rows) == sorted((kind, n, len(users[kind])) for kind, n in events.items())
    assert [n for _, n, _ in rows] == sorted(events.values(), reverse=True) and len(rows) == 4


def test_stop_then_start_again(served: tuple[Settings, dict], served_events: list[dict]) -> None:
    """Runs last: stopping ends the process and frees the port, a second stop is a no-op, and a new start serves
    again (the tables stay registered: the metastore lives in the lake)."""
    trino_settings, _ = served
    pid = stop(trino_settings)
    assert pid is not None and not _alive(pid)
    with socket.socket() as probe:
        assert probe.connect_ex((trino_settings.trino.host, trino_settings.trino.port)) != 0
    assert stop(trino_settings) is None
    assert start(trino_settings).pid not in (None, pid)
    # One row per day, type and country of the oracle's events.
    stats_rows = len({(event["event_date"], event["event_type"], event["country"]) for event in served_events})
    assert query(trino_settings, "SELECT count(*) FROM lake.daily_event_stats", ANALYST).rows == [(stats_rows,)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
