"""aggregates_daily (DESIGN §8): runs when events_hourly updated `lake.events`; rebuilds the days the new batches
touched (and the months of their monthly rollup), gates the three gold tables, and only when all pass publishes them
to Trino. Every step is idempotent per day (per month), so retries and re-runs change nothing twice."""

from datetime import timedelta

from airflow.sdk import DAG

from lakehouse import tables
from lakehouse.airflow_tasks import DAG_ARGS, command_task, events_asset, spark_job

with DAG("aggregates_daily", schedule=[events_asset()], doc_md=__doc__, dagrun_timeout=timedelta(hours=3), **DAG_ARGS):
    aggregate = spark_job("aggregate", "aggregate", timeout=timedelta(hours=1))
    validations = [
        spark_job(f"validate_{table}", "validate", table, timeout=timedelta(minutes=30)) for table in tables.GOLD
    ]
    start_trino = command_task("start_trino", "trino", "start", timeout=timedelta(minutes=10))
    publish = command_task("publish", "publish", timeout=timedelta(minutes=15))
    aggregate >> validations >> start_trino >> publish
