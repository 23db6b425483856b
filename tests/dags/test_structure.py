"""Every DAG of dags/ imports cleanly and has the tasks, order, schedule and safety settings DESIGN §8 asks for;
the Spark tasks submit the `lakehouse` command with the settings of conf/."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset
from airflow.sdk.exceptions import ParamValidationError

from lakehouse.airflow_local import SPARK_CONN_ID, WRITER_POOL, airflow_environ
from lakehouse.airflow_tasks import SECRET_CONF, SUBMIT_APP, ReportedErrorsAreFinal, conf_file, spark_job
from lakehouse.config import load_settings
from lakehouse.session import spark_conf
from tests.conftest import CONF
from tests.dags.conftest import DAGS

TASKS = {
    "events_hourly": {"ingest": {"new_batches"}, "new_batches": {"validate_events"},
                      "validate_events": {"validate_quarantine"}, "validate_quarantine": set()},
    "aggregates_daily": {"aggregate": {"validate_daily_user_activity", "validate_daily_event_stats",
                                       "validate_monthly_user_activity"},
                         "validate_daily_user_activity": {"start_trino"}, "validate_daily_event_stats": {"start_trino"},
                         "validate_monthly_user_activity": {"start_trino"},
                         "start_trino": {"publish"}, "publish": set()},
    "lake_maintenance": {"maintain": set()},
    "forget_user": {"forget_user": set()},
}  # fmt: skip
COMMANDS = {
    "ingest": ["ingest"],
    "validate_events": ["validate", "events"],
    "validate_quarantine": ["validate", "quarantine"],
    "aggregate": ["aggregate"],
    "validate_daily_user_activity": ["validate", "daily_user_activity"],
    "validate_daily_event_stats": ["validate", "daily_event_stats"],
    "validate_monthly_user_activity": ["validate", "monthly_user_activity"],
    "maintain": ["maintain"],
    "forget_user": ["forget-user", "{{ params.user_id }}"],
}
# The tasks that write the lake's tables (every one but Trino's start and the gate, which only read or start).
LAKE_WRITERS = {
    "ingest",
    "validate_events",
    "validate_quarantine",
    "aggregate",
    "validate_daily_user_activity",
    "validate_daily_event_stats",
    "validate_monthly_user_activity",
    "publish",
    "maintain",
    "forget_user",
}


@pytest.fixture(scope="module")
def dags() -> dict[str, DAG]:
    """The DAGs of dags/, parsed as the DAG processor parses them; no file may fail to import."""
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags


def test_every_dag_imports(dags: dict[str, DAG]) -> None:
    assert set(dags) == set(TASKS)


@pytest.mark.parametrize("dag_id", TASKS)
def test_tasks_and_their_order(dags: dict[str, DAG], dag_id: str) -> None:
    assert {task.task_id: task.downstream_task_ids for task in dags[dag_id].tasks} == TASKS[dag_id]


def test_schedules(dags: dict[str, DAG]) -> None:
    (produced,) = dags["events_hourly"].get_task("validate_quarantine").outlets
    assert isinstance(produced, Asset) and produced.name == "lake.events"
    assert dags["events_hourly"].schedule == "@hourly"
    assert dags["aggregates_daily"].schedule == [produced]
    assert dags["lake_maintenance"].schedule == "@daily"
    assert dags["forget_user"].schedule is None


@pytest.mark.parametrize("dag_id", TASKS)
def test_runs_never_overlap_nor_catch_up(dags: dict[str, DAG], dag_id: str) -> None:
    assert (dags[dag_id].max_active_runs, dags[dag_id].catchup) == (1, False)


@pytest.mark.parametrize("dag_id", TASKS)
def test_tasks_retry_with_backoff_within_a_timeout(dags: dict[str, DAG], dag_id: str) -> None:
    for task in dags[dag_id].tasks:
        assert task.retries >= 2 and task.retry_exponential_backoff > 1 and task.max_retry_delay
        assert task.execution_timeout is not None


def test_spark_tasks_submit_the_lakehouse_command_with_the_settings_of_conf(dags: dict[str, DAG]) -> None:
    expected = {k: v for k, v in spark_conf(load_settings(conf_file())).items() if not SECRET_CONF.search(k)}
    packages = expected.pop("spark.jars.packages")
    submitted = [task for dag in dags.values() for task in dag.tasks if isinstance(task, SparkSubmitOperator)]
    assert {task.task_id for task in submitted} == set(COMMANDS)
    for task in submitted:
        assert task.application_args == [*COMMANDS[task.task_id], "--conf", conf_file()]
        assert (task.application, task._conn_id) == (SUBMIT_APP, SPARK_CONN_ID)
        assert task.packages == packages and packages.startswith("io.delta:delta-spark_")
        assert task.conf == expected
        assert isinstance(task.retry_policy, ReportedErrorsAreFinal)


def test_no_secret_reaches_the_spark_submit_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 keys and the Trino password (set as in docker/compose.yaml, in the environment) are in no argument of
    spark-submit; the job's own session still gets the S3 keys, from the settings it reads in the driver."""
    secrets = {"LAKEHOUSE__S3__ACCESS_KEY": "AKIA-not-on-the-command-line",
               "LAKEHOUSE__S3__SECRET_KEY": "s3-secret-not-on-the-command-line",
               "LAKEHOUSE__TRINO__PASSWORD": "trino-password-not-on-the-command-line"}  # fmt: skip
    environ = {"LAKEHOUSE__LAKE__ROOT": "s3a://lakehouse/lake", "LAKEHOUSE__TRINO__HTTP_SCHEME": "https", **secrets}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    task = spark_job("aggregate", "aggregate", timeout=timedelta(minutes=5))
    command = task._get_hook()._build_spark_submit_command(task.application)
    assert any("fs.s3a.endpoint.region" in argument for argument in command)  # the lake on S3's own settings
    for value in secrets.values():
        assert not any(value in argument for argument in command), "a secret is on the spark-submit command line"
        assert value not in repr(task.conf) and value not in task.name
    session_conf = spark_conf(load_settings(conf_file()))
    assert session_conf["spark.hadoop.fs.s3a.secret.key"] == secrets["LAKEHOUSE__S3__SECRET_KEY"]


def test_publish_waits_for_both_gates(dags: dict[str, DAG]) -> None:
    aggregates = dags["aggregates_daily"]
    assert aggregates.get_task("publish").trigger_rule == aggregates.get_task("start_trino").trigger_rule
    assert aggregates.get_task("start_trino").trigger_rule == "all_success"
    assert "--conf" in aggregates.get_task("publish").bash_command


@pytest.mark.parametrize("user_id", ["5db24a33-5c3e-4f5e-9a8e-0d4c2f1b7a21", "user-42", "ana@example.com"])
def test_forget_user_takes_a_user_id(dags: dict[str, DAG], user_id: str) -> None:
    assert dags["forget_user"].params.get_param("user_id").resolve(user_id) == user_id


@pytest.mark.parametrize("user_id", ["", " ", "a b", "-rf", "x\n", None])
def test_forget_user_refuses_what_is_no_user_id(dags: dict[str, DAG], user_id: str | None) -> None:
    with pytest.raises(ParamValidationError):
        dags["forget_user"].params.get_param("user_id").resolve(user_id)


def test_airflow_is_sized_for_two_cores_and_submits_to_the_configured_master() -> None:
    settings = load_settings(CONF, {"LAKEHOUSE__SPARK__MASTER": "spark://spark-master:7077"})
    environ = airflow_environ(settings, str(CONF))
    connection = json.loads(environ["AIRFLOW_CONN_LAKEHOUSE_SPARK"])
    assert connection == {"conn_type": "spark", "host": "spark://spark-master:7077"}
    assert (environ["AIRFLOW__CORE__PARALLELISM"], environ["AIRFLOW__API__WORKERS"]) == ("2", "1")
    assert environ["AIRFLOW_HOME"].endswith("state/airflow") and environ["AIRFLOW__CORE__DAGS_FOLDER"].endswith("dags")


def test_lake_writers_share_one_pool_of_one_slot(dags: dict[str, DAG], airflow_db: None) -> None:
    """Every task writing the lake runs in the writers' pool, which the metadata DB holds with one slot (as
    `lakehouse airflow` and docker/'s airflow-init set it): the scheduler runs one writer at a time."""
    from airflow.models.pool import Pool

    tasks = {task.task_id: task.pool for dag in dags.values() for task in dag.tasks}
    assert {task for task, pool in tasks.items() if pool == WRITER_POOL} == LAKE_WRITERS
    assert {pool for task, pool in tasks.items() if task not in LAKE_WRITERS} == {Pool.DEFAULT_POOL_NAME}
    assert Pool.get_pool(WRITER_POOL).slots == 1
