"""The `lakehouse` command as a user runs it: results on stdout, one-line errors on stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable as RustTable
from pyspark.sql import SparkSession

from tests.conftest import CONF, REPO
from tests.lake import event_line, land


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
    assert summary["lines"] == 3000 == summary["valid"] + summary["duplicates"] + sum(summary["bad"].values())
    assert len(list((tmp_path / "out").rglob("*.jsonl.gz"))) == summary["files"] == 24
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
