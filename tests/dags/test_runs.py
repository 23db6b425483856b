"""events_hourly and aggregates_daily run end to end with dag.test(): real spark-submit jobs on local[2] and a real
Trino, on generated landing files. A failed quality gate fails the run and publishes nothing; once the gate passes,
the published tables reconcile with the generator; running the same hour again ingests nothing. (Running aggregate
again changes nothing: tests/jobs/test_aggregate.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session
from sqlalchemy import func, select

from lakehouse import tables
from lakehouse.config import Settings, load_settings
from lakehouse.generate import GenerateSummary, generate
from lakehouse.trino_client import query
from lakehouse.trino_server import start, stop
from tests.conftest import CONF, REPO, free_port
from tests.conftest import test_environ as lake_environ
from tests.dags.conftest import DAGS
from tests.lake import version
from tests.oracle import audit

pytestmark = pytest.mark.slow

LOGICAL_DATE = datetime(2024, 5, 2, 10, tzinfo=UTC)
INGESTED = (tables.EVENTS, tables.QUARANTINE, tables.INGEST_RUNS)
AGGREGATED = (tables.DAILY_USER_ACTIVITY, tables.DAILY_EVENT_STATS)


@dataclass(frozen=True)
class Lake:
    """The lake the DAGs run on, the environment that points their jobs at it, what landed, and its Trino server."""

    settings: Settings
    environ: dict[str, str]
    generated: GenerateSummary
    trino: Future


@dataclass(frozen=True)
class Run:
    """What one DAG run did: its state, each task's state and tries, and the asset events it emitted."""

    state: str
    tasks: dict[str, tuple[str, int]]
    asset_events: int


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, airflow_db: None) -> Iterator[Lake]:
    """A day of generated events (1% bad lines, 2% re-sent) in landing, and a Trino server for the lake, starting in
    the background meanwhile; it stops at the end of the module."""
    root = tmp_path_factory.mktemp("dags") / "lake"
    generated = generate(root / "landing" / "generated", events=1_500, days=1, start=date(2024, 5, 1), users=100,
                         types=8, bad_rate=0.01, dup_rate=0.02, seed=3)  # fmt: skip
    environ = {**lake_environ(root), "LAKEHOUSE__TRINO__PORT": str(free_port())}
    settings = load_settings(CONF, environ)
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield Lake(settings, environ, generated, pool.submit(start, settings))
    stop(settings)


def run(dag_id: str, environ: dict[str, str], **test_args: object) -> Run:
    """One dag.test() run of `dag_id` for LOGICAL_DATE (replacing the previous one), parsed and run in `environ`."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        patch.chdir(REPO)
        dag_run = DagBag(dag_folder=str(DAGS)).dags[dag_id].test(logical_date=LOGICAL_DATE, **test_args)
    tasks = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    emitted_by_it = (AssetEvent.source_dag_id == dag_id) & (AssetEvent.source_run_id == dag_run.run_id)
    with create_session() as session:
        emitted = session.scalar(select(func.count()).select_from(AssetEvent).where(emitted_by_it))
    return Run(dag_run.state, tasks, emitted)


def versions(settings: Settings, names: tuple[str, ...]) -> dict[str, int]:
    return {name: version(settings, name) for name in names}


def scalar(settings: Settings, sql: str) -> object:
    """The one value `sql` returns through Trino."""
    ((value,),) = query(settings, sql).rows
    return value


@pytest.fixture(scope="module")
def gate_failed(lake: Lake) -> tuple[Run, list[str]]:
    """events_hourly with a quarantine threshold of 0 (the batch's 1% breaks it), and the schemas Trino then has."""
    failed = run("events_hourly", {**lake.environ, "LAKEHOUSE__QUALITY__MAX_QUARANTINE_SHARE": "0"})
    lake.trino.result()
    return failed, [schema for (schema,) in query(lake.settings, "SHOW SCHEMAS").rows]


@pytest.fixture(scope="module")
def published(lake: Lake, gate_failed: tuple) -> tuple[Run, Run, dict[str, int], dict[str, int]]:
    """With the default threshold, events_hourly for the same hour again (ingest finds nothing new; validate_events,
    which passed on this batch before, is marked done to keep the test short), then aggregates_daily (its gates,
    jobs like validate_events whose failing run is the test above, marked done too); both runs, and the ingested
    tables' versions before and after the second events_hourly."""
    before = versions(lake.settings, INGESTED)
    hourly = run("events_hourly", lake.environ, mark_success_pattern="validate_events")
    after = versions(lake.settings, INGESTED)
    return hourly, run("aggregates_daily", lake.environ, mark_success_pattern="validate_.*"), before, after


def test_a_failed_gate_fails_the_run_at_once_and_publishes_nothing(gate_failed: tuple[Run, list[str]]) -> None:
    failed, schemas = gate_failed
    assert failed.state == "failed"
    assert failed.tasks == {"ingest": ("success", 1), "new_batches": ("success", 1),
                            "validate_events": ("success", 1), "validate_quarantine": ("failed", 1)}  # fmt: skip
    assert failed.asset_events == 0, "a failed batch must not schedule aggregates_daily"
    assert "lake" not in schemas and "bi" not in schemas


def test_the_same_hour_again_ingests_nothing_and_schedules_the_aggregates(published: tuple) -> None:
    hourly, _, before, after = published
    assert hourly.state == "success" and hourly.asset_events == 1
    assert after == before


def test_aggregates_are_published_and_reconcile_with_the_generator(lake: Lake, published: tuple) -> None:
    daily, generated, settings = published[1], lake.generated, lake.settings
    assert daily.state == "success" and {state for state, _ in daily.tasks.values()} == {"success"}
    runs = query(settings, "SELECT lines_read, valid, quarantined, duplicates FROM lake.ingest_runs").rows
    assert runs == [(generated.lines, generated.valid, sum(generated.bad.values()), generated.duplicates)]
    assert scalar(settings, "SELECT count(*) FROM lake.events") == generated.valid
    assert scalar(settings, "SELECT sum(events) FROM lake.daily_event_stats") == generated.valid
    # The events of known users, as the oracle reads the generated files (the attributes' user id, else the meta's).
    found = [event for _, event in audit(generated.files).events]
    identified = sum(1 for e in found if (e["data"]["attributes"].get("user_id") or e["meta"].get("user_id")))
    assert scalar(settings, "SELECT sum(events) FROM lake.daily_user_activity") == identified
    assert scalar(settings, "SELECT count(*) FROM lake.events WHERE user_id IS NOT NULL") == identified
    views = query(settings, "SELECT table_name FROM information_schema.views WHERE table_schema = 'bi'").rows
    assert {name for (name,) in views} == {path.stem for path in (REPO / "sql").glob("*.sql")}


def test_an_hour_in_which_nothing_landed_checks_nothing_and_schedules_nothing(tmp_path: Path, airflow_db: None) -> None:
    root = tmp_path / "lake"
    (root / "landing").mkdir(parents=True)
    quiet = run("events_hourly", lake_environ(root))
    assert quiet.state == "success" and quiet.asset_events == 0
    assert {task: state for task, (state, _) in quiet.tasks.items()} == {
        "ingest": "success", "new_batches": "success", "validate_events": "skipped", "validate_quarantine": "skipped"
    }  # fmt: skip
