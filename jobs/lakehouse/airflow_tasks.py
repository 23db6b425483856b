"""The Airflow task factory the DAGs of dags/ are wired from: `lakehouse COMMAND` through spark-submit (or as a plain
command), with conf/'s Spark settings, retries and the new-batches gate."""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import Asset, RetryDecision, RetryPolicy

from lakehouse import state, tables
from lakehouse.airflow_local import CONF_ENV, SPARK_CONN_ID, WRITER_POOL
from lakehouse.config import DEFAULT_CONF, Settings, load_settings
from lakehouse.session import spark_conf
from lakehouse.writer_lock import WRITERS

SUBMIT_APP = str(Path(__file__).resolve().with_name("submit.py"))
# How the `lakehouse` command starts the one line it reports an error with (cli.main).
REPORTED_ERROR = "lakehouse: error: "
START = datetime(2024, 1, 1, tzinfo=UTC)
# Spark settings holding a secret (Spark's own spark.redaction.regex, and S3A's access.key): never submitted.
SECRET_CONF = re.compile(r"(?i)secret|password|token|access[.]key")
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "lakehouse",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
}
# What every lakehouse DAG shares: one run at a time and no catch-up (a run takes all that waits, exactly once, so a
# missed interval needs no run of its own), retries with backoff.
DAG_ARGS: dict[str, Any] = {
    "start_date": START,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "tags": ["lakehouse"],
}


class ReportedErrorsAreFinal(RetryPolicy):
    """Fails a task at once when the `lakehouse` command reported the error itself (a failed quality gate, a bad
    setting or argument): a retry would only repeat it. Anything else (a lost executor, a crashed JVM, a network
    error) takes the task's retries with their backoff."""

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int, context: Any = None) -> RetryDecision:
        """FAIL for an error the command reported, DEFAULT otherwise."""
        if REPORTED_ERROR in str(exception):
            return RetryDecision.fail("the lakehouse command reported the error: retrying would repeat it")
        return RetryDecision.default()


def conf_file() -> str:
    """The settings file of the jobs the DAGs run."""
    return os.environ.get(CONF_ENV, DEFAULT_CONF)


def dag_settings() -> Settings:
    """The settings the DAGs are built from (read when a DAG file is parsed)."""
    return load_settings(conf_file())


def events_asset() -> Asset:
    """The `events` table, updated by events_hourly when a batch passed its quality gate."""
    return Asset(name="lake.events", uri=tables.table_path(dag_settings(), tables.EVENTS))


def spark_job(task_id: str, *command: str, timeout: timedelta, **kwargs: Any) -> SparkSubmitOperator:
    """A task running `lakehouse COMMAND` through spark-submit on the connection's master, with conf/'s Spark
    settings and the Delta jars as spark-submit packages. Secrets (S3 keys, any token or password of spark.conf) stay
    off the spark-submit command line, which `ps` and the task's log show: the job's own session sets them, from the
    settings it reads from the environment in the driver."""
    job_conf = {key: value for key, value in spark_conf(dag_settings()).items() if not SECRET_CONF.search(key)}
    packages = job_conf.pop("spark.jars.packages")
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN_ID,
        application=SUBMIT_APP,
        application_args=[*command, "--conf", conf_file()],
        conf=job_conf,
        packages=packages,
        name=f"{job_conf['spark.app.name']}-{task_id}",
        execution_timeout=timeout,
        retry_policy=ReportedErrorsAreFinal(),
        **_pool(command),
        **kwargs,
    )


def command_task(task_id: str, *command: str, timeout: timedelta) -> BashOperator:
    """A task running `lakehouse COMMAND` as it is, for the commands that need no Spark. It runs in Airflow's working
    directory, like the Spark jobs: a relative --conf file (and a relative path in a LAKEHOUSE__ variable) is found
    from there, while the file's own relative paths are relative to its project folder, as on the command line."""
    line = shlex.join([sys.executable, "-m", "lakehouse.cli", *command, "--conf", conf_file()])
    return BashOperator(
        task_id=task_id, bash_command=line, cwd=os.getcwd(), execution_timeout=timeout, **_pool(command)
    )


def _pool(command: tuple[str, ...]) -> dict[str, str]:
    """The writers' pool for a command that writes the lake; Airflow's default pool otherwise."""
    return {"pool": WRITER_POOL} if command[0] in WRITERS else {}


def new_batches_gate(task_id: str) -> ShortCircuitOperator:
    """A task that lets the rest of the run go on only while some ingest batch waits for the aggregates, and skips it
    otherwise: an hour in which nothing landed neither validates again nor makes aggregates_daily run. Batches that
    stay waiting (a failed gate, a failed aggregates run) keep the gate open, so their checks run again."""
    return ShortCircuitOperator(task_id=task_id, python_callable=_new_batches, execution_timeout=timedelta(minutes=5))


def _new_batches() -> bool:
    return bool(state.unaggregated_batches(dag_settings()))
