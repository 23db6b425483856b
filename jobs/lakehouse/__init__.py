"""Event lakehouse: JSON events into Delta Lake with Spark, quality gates, Trino serving and Airflow DAGs."""
