"""lake_maintenance (DESIGN §6, §8): once a day, `lakehouse maintain` compacts small files, clusters `events` by user
and vacuums with the configured retention."""

from datetime import timedelta

from airflow.sdk import DAG

from lakehouse.airflow_tasks import DAG_ARGS, spark_job

with DAG("lake_maintenance", schedule="@daily", doc_md=__doc__, **DAG_ARGS):
    spark_job("maintain", "maintain", timeout=timedelta(hours=4))
