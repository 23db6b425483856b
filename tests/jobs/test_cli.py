"""The `lakehouse` command as a user runs it: results on stdout, one-line errors on stderr, exit codes."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable as RustTable
from pyspark.sql import SparkSession

from lakehouse.cli import main
from lakehouse.config import load_settings
from lakehouse.errors import LakehouseError
from lakehouse.ingest import ingest
from lakehouse.publish import create_views
from tests.conftest import CONF, REPO, free_port
from tests.lake import event_line, land
from tests.oracle import audit


def lakehouse(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["ingest", "--conf", "nowhere.yaml"], {}, "lakehouse: error: config file not found: nowhere.yaml"),
        (["ingest"], {"LAKEHOUSE__INGEST__MAX_LINE_BYTES": "x"}, "(from LAKEHOUSE__INGEST__MAX_LINE_BYTES)"),
        (["generate", "--out", "x", "--events", "ten"], {}, "argument --events: invalid a whole number value: 'ten'"),
        (["generate", "--out", "x", "--events", "5", "--bad-rate", "2"], {}, "argument --bad-rate: must be in [0, 1)"),
        (["generate", "--out", "x", "--events", "5", "--start", "2024-13-01"], {}, "expected YYYY-MM-DD"),
        (["frobnicate"], {}, "argument command: invalid choice: 'frobnicate'"),
        (["aggregate", "--from", "2024-07-02"], {}, "--from and --to go together"),
        (["aggregate", "--from", "2024-07-02", "--to", "2024-07-01"], {}, "is before --from 2024-07-02"),
        (["aggregate", "--date", "2024-07-01", "--from", "2024-07-01"], {}, "not allowed with argument --date"),
        (["aggregate", "--date", "July"], {}, "argument --date: expected YYYY-MM-DD, got 'July'"),
        (["forget-user", ""], {}, "lakehouse: error: USER_ID must not be empty"),
        (["forget-user", "u1\r\n"], {}, "lakehouse: error: USER_ID must not hold control characters"),
        (["maintain"], {"LAKEHOUSE__MAINTENANCE__VACUUM_RETENTION_HOURS": "24"}, "greater than or equal to 168"),
        (["ingest", "--interval", "3"], {}, "lakehouse: error: --interval goes with --watch"),
        (["ingest", "--watch", "--interval", "0"], {}, "argument --interval: must be a number of seconds above 0"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(cli_env, args: list[str], extra_env: dict, message: str) -> None:
    done = lakehouse(*args, env={**cli_env, **extra_env})
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_generate_prints_its_counts(cli_env, tmp_path: Path) -> None:
    done = lakehouse("generate", "--out", str(tmp_path / "out"), "--events", "3000", "--start", "2024-05-01",
                     "--bad-rate", "0.1", "--dup-rate", "0.1", "--gzip", env=cli_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    written = sorted(str(path) for path in (tmp_path / "out").rglob("*.jsonl.gz"))
    # Each printed count against the independent checker's reading of the files (`lines` is the generator's sum of
    # the other three, so only an independent count can catch a wrong one).
    found = audit(written)
    assert summary["lines"] == found.lines == 3000
    assert (summary["valid"], summary["duplicates"]) == (len(found.first_seen), found.duplicates)
    assert summary["bad"] == dict(found.reasons) and sum(found.reasons.values()) > 0
    assert len(written) == summary["files"] == 24
    again = lakehouse("generate", "--out", str(tmp_path / "out"), "--events", "3000", "--start", "2024-05-01",
                      "--gzip", env=cli_env)  # fmt: skip
    assert again.returncode == 2 and "exists" in again.stderr


def test_missing_landing_folder_is_a_one_line_error(cli_env, tmp_path: Path) -> None:
    done = lakehouse("ingest", env={**cli_env, "LAKEHOUSE__LAKE__ROOT": str(tmp_path / "elsewhere")})
    assert done.returncode == 2
    assert done.stderr.strip().startswith("lakehouse: error: no landing folder at file://")
    assert len(done.stderr.strip().splitlines()) == 1


def _files(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_the_project_conf_means_the_same_from_another_working_directory(spark: SparkSession, tmp_path: Path) -> None:
    """`--conf <repo>/conf/local.yaml` from a fresh folder: the file's relative paths (Ivy cache, suites) resolve into
    the repo, so nothing is fetched again nor cached there; the variables' relative paths resolve in that folder.
    (The session's `spark` has filled the repo's Ivy cache, if it was empty.)"""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    lines = [event_line(f"event-{n}", datetime(2024, 3, 1, 10, n), user=f"user-{n}") for n in range(4)]
    land(cwd / "lake" / "landing", "events.jsonl", [*lines, lines[0]])
    ivy = REPO / ".cache" / "ivy"
    cached = _files(ivy)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LAKEHOUSE__")}
    env |= {
        "LAKEHOUSE__LAKE__ROOT": "lake",
        "LAKEHOUSE__SPARK__LOG_FILE": "logs/spark.log",
        "LAKEHOUSE__SPARK__MASTER": "local[2]",
        "LAKEHOUSE__SPARK__SHUFFLE_PARTITIONS": "2",
        "LAKEHOUSE__SPARK__DRIVER_MEMORY": "2g",
        "LAKEHOUSE__SPARK__CONF": "{spark.ui.enabled: 'false'}",
    }
    done = lakehouse("ingest", "--conf", str(CONF), env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["lines_read"], summary["valid"], summary["duplicates"], summary["quarantined"]) == (5, 4, 1, 0)
    assert summary["checks"] == {"events": "passed", "quarantine": "passed"}
    assert RustTable(str(cwd / "lake" / "events")).to_pyarrow_table().num_rows == 4
    assert sorted(path.name for path in cwd.iterdir()) == ["lake", "logs"]
    log = (cwd / "logs" / "spark.log").read_text()
    assert f"Ivy Default Cache set to: {ivy / 'cache'}\n" in log
    assert "downloading " not in log
    assert _files(ivy) == cached


def _one_line_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    """The error line of a command that failed as a user error should: exit 2, one line on stderr that starts
    `lakehouse: error: ` and holds each of `expected`, no traceback."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lakehouse: error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "extra_env", "expected"),
    [
        (["ingest", "--conf", "{tmp}"], {}, ["config file {tmp} is a folder"]),
        (["ingest", "--conf", "{tmp}/a-file/local.yaml"], {}, ["config file not found: {tmp}/a-file/local.yaml",
                                                              "is a file"]),
        (["ingest", "--conf", "{tmp}/latin1.yaml"], {}, ["{tmp}/latin1.yaml is not UTF-8"]),
        (["generate", "--out", "{tmp}/out", "--events", "5", "--days", "999999999"], {},
         ["--days 999999999", "give --start"]),
        (["generate", "--out", "{tmp}/out", "--events", "5", "--start", "9999-12-30", "--days", "5"], {},
         ["5 days from 9999-12-30 end after 9999-12-31"]),
        (["generate", "--out", "{tmp}/a-file/out", "--events", "5"], {}, ["{tmp}/a-file is a file, not a folder"]),
        (["ingest"], {"LAKEHOUSE__LAKE__ROOT": "s3://bucket/lake"}, ["lake.root", "s3a://bucket/lake"]),
        (["ingest"], {"LAKEHOUSE__LAKE__ROOT": "gs://bucket/lake"}, ["lake.root", "gs:// is not supported", "s3a://"]),
        (["ingest"], {"LAKEHOUSE__SPARK__MASTER": "lokal[2]"}, ["spark.master", "'lokal[2]' is not a Spark master"]),
        (["ingest"], {"LAKEHOUSE__SPARK__MASTER": "local[0]"}, ["spark.master", "must be at least 1"]),
        (["ingest"], {"LAKEHOUSE__SPARK__MASTER": "spark://nohost"}, ["spark.master", "is not a Spark master URL"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_without_traceback(
    cli_env, tmp_path: Path, args: list[str], extra_env: dict, expected: list[str]
) -> None:
    """Files, folders, dates and settings that used to end in a Python traceback (or a JVM that cannot start)."""
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "latin1.yaml").write_bytes("lake:\n  root: ./müll\n".encode("latin-1"))
    done = lakehouse(*(arg.format(tmp=tmp_path) for arg in args), env={**cli_env, **extra_env})
    _one_line_error(done, *(text.format(tmp=tmp_path) for text in expected))
    assert done.stdout == ""


@pytest.mark.slow
def test_a_port_answered_by_another_server_is_named(cli_env, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_port(port)
        done = lakehouse("sql", "SELECT 1", env={**cli_env, "LAKEHOUSE__TRINO__PORT": str(port)})
    finally:
        server.terminate()
        server.wait(timeout=10)
    _one_line_error(done, f"what answers at 127.0.0.1:{port} is not a Trino server", "HTTP 501")


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.1)


def test_a_damaged_trino_download_is_one_line_and_not_taken_for_installed(cli_env, tmp_path: Path) -> None:
    """A Maven (a stand-in script on the PATH) that delivers a truncated tarball: the start fails in one line, leaves
    no server folder (nor a partial one) and deletes the tarball, so the next start fetches it again."""
    source = tmp_path / "source" / "trino-server-9999"
    for folder in ("bin", "plugin/delta-lake", "plugin/hive"):
        (source / folder).mkdir(parents=True)
    (source / "bin" / "launcher").write_text("#!/bin/sh\n")
    (source / "plugin" / "hive" / "big.jar").write_bytes(random.Random(1).randbytes(200_000))
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w:gz") as archive:
        archive.add(source, arcname=source.name)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "mvn").write_text(  # copies the tarball where -DoutputDirectory=… says, as `dependency:copy` does
        f'#!/bin/sh\nfor arg; do case "$arg" in -DoutputDirectory=*) out="${{arg#*=}}";; esac; done\n'
        f'mkdir -p "$out" && cp {truncated} "$out/trino-server-9999.tar.gz"\n'
    )
    (tools / "mvn").chmod(0o755)
    home = tmp_path / "trino-home"
    env = {**cli_env, "PATH": f"{tools}{os.pathsep}{cli_env['PATH']}", "LAKEHOUSE__TRINO__HOME": str(home),
           "LAKEHOUSE__TRINO__VERSION": "9999", "LAKEHOUSE__TRINO__PORT": str(free_port())}  # fmt: skip
    done = lakehouse("trino", "start", env=env)
    download = home / "download" / "trino-server-9999.tar.gz"
    _one_line_error(done, f"the Trino tarball {download} is damaged", "the next start fetches it again")
    assert sorted(path.name for path in home.iterdir()) == ["download"]
    assert list((home / "download").iterdir()) == []


@pytest.mark.slow
def test_a_jvm_that_cannot_start_is_one_line_naming_the_cause_and_the_log(cli_env, tmp_path: Path) -> None:
    """A heap size the settings' pattern allows and the JVM refuses; the log already holds an older run's output."""
    log = tmp_path / "spark.log"
    log.write_text('Exception in thread "main" java.lang.RuntimeException: [an older run]\n')
    land(tmp_path / "lake" / "landing", "a.jsonl", [event_line("e1", datetime(2024, 6, 1, 8))])
    env = {**cli_env, "LAKEHOUSE__SPARK__LOG_FILE": str(log), "LAKEHOUSE__SPARK__DRIVER_MEMORY": "99999999t"}
    done = lakehouse("ingest", env=env)
    _one_line_error(done, "Spark could not start: Invalid maximum heap size: -Xmx99999999t", f"(see {log})")
    assert done.stdout == ""


@pytest.mark.slow
def test_ingest_with_nothing_new_answers_without_starting_spark(cli_env, tmp_path: Path, spark: SparkSession) -> None:
    """With a heap the JVM refuses, `ingest` succeeds only while it never starts Spark: on an empty landing folder,
    one holding only files it leaves alone, and one whose files a batch took; a file landed after that is work."""
    landing = tmp_path / "lake" / "landing"
    env = {**cli_env, "LAKEHOUSE__SPARK__DRIVER_MEMORY": "99999999t"}
    nothing = {"run_id": None, "batch": None, "files": 0, "lines_read": 0}
    landing.mkdir(parents=True)
    land(landing, "_uploading/a.jsonl", [event_line("e0", datetime(2024, 6, 1, 8))])
    land(landing, ".b.jsonl.tmp", [event_line("e0", datetime(2024, 6, 1, 8))])
    land(landing, "notes.txt", ["not an event file"])
    for step in ("empty but for files left alone", "every file taken"):
        done = lakehouse("ingest", env=env)
        assert done.returncode == 0, (step, done.stderr)
        assert json.loads(done.stdout).items() >= nothing.items(), step
        if step.startswith("empty"):
            land(landing, "day/a.jsonl", [event_line("e1", datetime(2024, 6, 1, 8))])
            [summary] = ingest(load_settings(CONF, cli_env))
            assert summary["files"] == 1 and summary["valid"] == 1
    land(landing, "day/b.jsonl", [event_line("e2", datetime(2024, 6, 1, 9))])
    _one_line_error(lakehouse("ingest", env=env), "Spark could not start")


def test_a_missing_airflow_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`lakehouse airflow` run by a Python that has no `airflow` next to it."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("LAKEHOUSE__AIRFLOW__HOME", str(tmp_path / "airflow"))
    assert main(["airflow", "--conf", str(CONF)]) == 2
    error = capsys.readouterr().err
    assert error == f"lakehouse: error: cannot run Airflow: {tmp_path / 'bin' / 'airflow'}: No such file or " \
                    "directory (`make` installs it)\n"  # fmt: skip


def test_a_view_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    view = tmp_path / "sales.sql"
    view.write_bytes("CREATE OR REPLACE VIEW bi.sales SECURITY INVOKER AS SELECT 'Straße' AS s\n".encode("latin-1"))
    settings = load_settings(CONF, {"LAKEHOUSE__TRINO__VIEWS_DIR": str(tmp_path)})
    with pytest.raises(LakehouseError) as caught:
        create_views(settings)
    assert str(caught.value).startswith(f"{view}: not UTF-8 text (byte 64: ")
    assert "\n" not in str(caught.value)
