"""forget_user (DESIGN §6, §8): on demand, `lakehouse forget-user USER_ID` removes one user's events from the tables
and the landing files and records that it happened. Trigger it with {"user_id": "…"}."""

from datetime import timedelta

from airflow.sdk import DAG, Param

from lakehouse.airflow_tasks import DAG_ARGS, spark_job

with DAG(
    "forget_user",
    schedule=None,
    doc_md=__doc__,
    **DAG_ARGS,
    params={
        "user_id": Param(
            type="string",
            # One token that is not an option (it reaches the command as one argument, never through a shell); it
            # ends with `(?![\s\S])` because `$` would let a trailing line break through.
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,255}(?![\s\S])",
            description="The user_id whose events to remove, e.g. 5db24a33-5c3e-4f5e-9a8e-0d4c2f1b7a21",
        )
    },
):
    spark_job("forget_user", "forget-user", "{{ params.user_id }}", timeout=timedelta(hours=2))
