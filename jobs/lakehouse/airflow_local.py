"""`lakehouse airflow`: Airflow standalone for this project, in an environment built from conf/: its home and DAG
folder, sized for a small machine, the Spark connection the DAGs submit to, and the settings file their jobs use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError

# The settings file the DAGs run their jobs with; without it, the command line's default.
CONF_ENV = "LAKEHOUSE_CONF"
SPARK_CONN_ID = "lakehouse_spark"
# The pool of every task that writes the lake: one slot, so the scheduler runs one writer at a time (the commands'
# own writer lock makes it safe whatever runs them; the pool keeps a waiting writer from holding a worker slot).
WRITER_POOL = "lake_writers"


def airflow_environ(settings: Settings, conf: str) -> dict[str, str]:
    """The environment Airflow runs in: home and DAG folder from conf/, sized for 2 cores (standalone's defaults
    start 32 task workers), the Spark connection built from `spark.master`, the settings file `conf` for the jobs,
    and this installation's tools first on the PATH (the Spark provider runs `spark-submit` from there)."""
    config = settings.airflow
    tools = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": os.path.abspath(config.home),
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.abspath(config.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{config.port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(config.port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps({"conn_type": "spark", "host": settings.spark.master}),
        CONF_ENV: os.path.abspath(conf),
        "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def standalone(settings: Settings, conf: str) -> None:
    """Replaces this process with `airflow standalone` in `airflow_environ` (which generates the admin password into
    Airflow's home on first start and says where), its metadata DB migrated and the writers' pool set first."""
    environ = {**os.environ, **airflow_environ(settings, conf)}
    try:
        Path(environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LakehouseError(f"airflow.home {environ['AIRFLOW_HOME']} cannot be created: {exc.strerror}") from None
    _airflow(environ, "db", "migrate")
    set_writer_pool(environ)
    airflow = _binary()
    os.execve(airflow, [airflow, "standalone"], environ)


def set_writer_pool(environ: dict[str, str]) -> None:
    """Creates (or resets) `WRITER_POOL` with one slot in the metadata DB of `environ`'s Airflow."""
    _airflow(environ, "pools", "set", WRITER_POOL, "1", "lake writers: one at a time")


def _binary() -> str:
    airflow = Path(sys.executable).with_name("airflow")
    if not os.access(airflow, os.X_OK):
        cause = "Permission denied" if airflow.exists() else "No such file or directory"
        raise LakehouseError(f"cannot run Airflow: {airflow}: {cause} (`make` installs it)")
    return str(airflow)


def _airflow(environ: dict[str, str], *command: str) -> None:
    done = subprocess.run([_binary(), *command], env=environ, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise LakehouseError(f"`airflow {' '.join(command)}` failed (exit {done.returncode}): {last}")
