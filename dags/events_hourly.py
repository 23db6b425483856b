"""events_hourly (DESIGN §8): ingest what landed, then, while a batch waits for the aggregates, the quality gate of
the latest batch; a batch that passes updates the `lake.events` asset, which schedules aggregates_daily. Ingest takes
every landed file not yet taken, exactly once, so retries, re-runs and backfills of any hour are safe."""

from datetime import timedelta

from airflow.sdk import DAG

from lakehouse.airflow_tasks import DAG_ARGS, events_asset, new_batches_gate, spark_job

with DAG("events_hourly", schedule="@hourly", doc_md=__doc__, dagrun_timeout=timedelta(hours=3), **DAG_ARGS):
    ingest = spark_job("ingest", "ingest", timeout=timedelta(hours=2))
    waiting = new_batches_gate("new_batches")
    validate_events = spark_job("validate_events", "validate", "events", timeout=timedelta(minutes=30))
    validate_quarantine = spark_job(
        "validate_quarantine", "validate", "quarantine", timeout=timedelta(minutes=30), outlets=[events_asset()]
    )
    ingest >> waiting >> validate_events >> validate_quarantine
