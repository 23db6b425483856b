"""docker/: the compose file parses (through `docker compose config` where that plugin exists), every file a service
mounts or builds from is in the repo, every secret comes from the environment, and the services agree with
conf/docker.yaml and with the Trino configuration `lakehouse trino` generates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from lakehouse.config import Settings, load_settings
from lakehouse.trino_server import _catalog, _rules
from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
SERVICES = {
    "minio", "minio-init", "postgres", "spark-master", "spark-worker", "trino", "airflow-init", "airflow-api-server",
    "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
}  # fmt: skip
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "conf" / "docker.yaml", {})


def _has_compose_plugin() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


@pytest.mark.skipif(not _has_compose_plugin(), reason="no `docker compose` plugin on this machine")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    environ = {name: "x" for name in _example_variables()}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in environ.items()))
    done = subprocess.run(["docker", "compose", "--file", str(COMPOSE), "--env-file", str(env_file), "config",
                           "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_every_mounted_or_built_file_is_in_the_repo(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts {source}, which is not in the repo"
        if "build" in service:
            assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    for source in re.findall(r"^COPY (\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE):
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repo"


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if image != "lakehouse:latest":
            assert ":" in image and not image.endswith(":latest"), f"{name} runs an unpinned image {image}"


def test_secrets_come_from_the_environment_only(compose: dict[str, Any]) -> None:
    """Every variable the compose file reads is in env.example, which gives none a value; no password is inline."""
    text = COMPOSE.read_text(encoding="utf-8")
    assert set(VARIABLE.findall(text)) == set(_example_variables())
    assert all(value == "" for value in _example_variables().values())
    for service in compose["services"].values():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|KEY", key):
                assert VARIABLE.fullmatch(str(value)), f"{key} must come from the environment"
    assert "docker/.env" in (REPO / ".gitignore").read_text().splitlines()


def test_the_airflow_services_share_one_configuration(compose: dict[str, Any]) -> None:
    airflow = {name: s for name, s in compose["services"].items() if name.startswith("airflow-")}
    environments = [s["environment"] for s in airflow.values()]
    assert all(environment == environments[0] for environment in environments)
    assert environments[0]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/lakehouse/dags"
    assert {s["command"][1] for s in airflow.values()} == {"db", "api-server", "scheduler", "dag-processor",
                                                           "triggerer"}  # fmt: skip


def test_conf_docker_matches_the_services(compose: dict[str, Any], settings: Settings) -> None:
    services = compose["services"]
    spark = json.loads(services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_LAKEHOUSE_SPARK"])
    assert spark == {"conn_type": "spark", "host": settings.spark.master}
    assert settings.spark.master == "spark://spark-master:7077"
    assert (settings.trino.host, settings.trino.port) == ("trino", 8080)
    bucket = settings.lake.root.removeprefix("s3a://").split("/")[0]
    assert f"lake/{bucket}" in (DOCKER / "minio" / "minio-init.sh").read_text()


def test_trino_rules_are_the_ones_lakehouse_generates(settings: Settings) -> None:
    rules = json.loads((DOCKER / "trino" / "etc" / "rules.json").read_text())
    assert rules == _rules(settings.trino.user)


def test_trino_catalog_is_the_one_lakehouse_generates_with_keys_from_the_environment(settings: Settings) -> None:
    lines = (DOCKER / "trino" / "etc" / "catalog" / "lakehouse.properties").read_text().splitlines()
    served = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    keys = {"access_key": SecretStr("${ENV:S3_ACCESS_KEY}"), "secret_key": SecretStr("${ENV:S3_SECRET_KEY}")}
    with_keys = settings.model_copy(update={"s3": settings.s3.model_copy(update=keys)})
    assert served == _catalog(with_keys)
    assert not settings.trino.managed


def _example_variables() -> dict[str, str]:
    lines = (DOCKER / "env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}
