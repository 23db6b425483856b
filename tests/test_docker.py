"""docker/: the compose file is valid Compose (checked here against the Compose Specification's JSON schema, the one
`docker compose` embeds, with what `docker compose config` checks besides; and by `docker compose config` itself where
that plugin exists), every file a service mounts or builds from is in the repo, every secret comes from the
environment, and the services agree with conf/docker.yaml and with the Trino configuration `lakehouse trino`
generates."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import SecretStr

from lakehouse.airflow_local import WRITER_POOL
from lakehouse.config import Settings, load_settings
from lakehouse.trino_server import _catalog, _rules
from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
SERVICES = {
    "minio", "minio-init", "postgres", "spark-master", "spark-worker", "trino", "trino-tls", "trino-passwords",
    "airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "ingest-watch",
}  # fmt: skip
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")
# tests/compose_spec/README.md: where the schema comes from, its licence.
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
# Compose's interpolation: $$, $NAME, ${NAME} and ${NAME<op><argument>} with op one of :- - :? ? :+ +.
REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<argument>[^}]*))?\}|(?P<bare>\w+))"
)
PORT = r"\d{1,5}(?:-\d{1,5})?"
IP = r"\d{1,3}(?:\.\d{1,3}){3}|\[[\da-fA-F:]+\]"
SHORT_PORT = re.compile(rf"(?:(?:(?:{IP}):)?(?P<host>{PORT})?:)?(?P<container>{PORT})(?:/(?:tcp|udp|sctp))?")
VOLUME_OPTIONS = {"ro", "rw", "nocopy", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate"}
# Go's time.ParseDuration, what Compose reads a healthcheck's times with.
DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|[-+]?0")
HEALTHCHECK_TIMES = ("interval", "timeout", "start_period", "start_interval")


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


def test_docker_compose_accepts_the_file(compose: dict[str, Any], tmp_path: Path) -> None:
    """With every variable of env.example set: valid against the Compose schema, and consistent as `docker compose
    config` checks it, on every machine; where the `docker compose` plugin exists, `docker compose config` too."""
    environ = {name: "x" for name in _example_variables()}
    assert _compose_errors(compose, environ) == []
    if _has_compose_plugin():
        env_file = tmp_path / ".env"
        env_file.write_text("".join(f"{name}={value}\n" for name, value in environ.items()))
        done = subprocess.run(["docker", "compose", "--file", str(COMPOSE), "--env-file", str(env_file), "config",
                               "--quiet"], capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr


def _service(name: str, change: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], object]:
    return lambda document: change(document["services"][name])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_service("postgres", lambda s: s.pop("image")), "services.postgres: neither an image nor a build"),
        (_service("trino", lambda s: s.update(imagee="trinodb/trino:476")), "'imagee' does not match any of the"),
        (_service("minio", lambda s: s.update(ports="9001:9001")), "services.minio.ports: '9001:9001' is not of type"),
        (_service("trino", lambda s: s.update(ports=["8090:80800"])), "services.trino.ports: 8090:80800: no port"),
        (_service("trino", lambda s: s.update(ports=["8090:8080:1"])), "services.trino.ports: 8090:8080:1: not a port"),
        (_service("airflow-api-server", lambda s: s.update(ports=["8081:8080"])), "host port 8081 is published by"),
        (_service("postgres", lambda s: s.update(volumes=["pgdata:/data"])), "undefined volume pgdata"),
        (_service("postgres", lambda s: s.update(volumes=["./x:data"])), "./x:data: the target must be an absolute"),
        (_service("trino", lambda s: s.update(volumes=["./a:/a:ro:x"])), "./a:/a:ro:x: too many colons"),
        (_service("trino", lambda s: s.update(volumes=["./a:/a:readonly"])), "./a:/a:readonly: unknown option"),
        (_service("spark-worker", lambda s: s.update(depends_on=["spark-mastr"])), "undefined service spark-mastr"),
        (_service("minio", lambda s: s["healthcheck"].update(test=["mc", "ready"])), 'start with "CMD", "CMD-SHELL"'),
        (_service("minio", lambda s: s["healthcheck"].update(interval="5 s")), "healthcheck.interval: 5 s is not a"),
        (_service("trino", lambda s: s["environment"].update(X="${UNDOCUMENTED}")), "UNDOCUMENTED is not in env.ex"),
    ],
)  # fmt: skip
def test_the_compose_check_refuses_what_compose_refuses(
    compose: dict[str, Any], change: Callable[[dict[str, Any]], object], error: str
) -> None:
    """The check of the test above, on the compose file with one mistake each: it finds that one."""
    broken = copy.deepcopy(compose)
    change(broken)
    errors = _compose_errors(broken, {name: "x" for name in _example_variables()})
    assert any(error in found for found in errors), errors


def test_the_compose_check_refuses_a_secret_left_unset(compose: dict[str, Any]) -> None:
    """env.example as it is (every value empty): each `${NAME:?…}` stops Compose with its message."""
    errors = _compose_errors(compose, _example_variables())
    required = ("S3_ACCESS_KEY", "S3_SECRET_KEY", "POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET")
    for name in required:
        assert any(found.endswith(f": {name}: set {name} in docker/.env") for found in errors), (name, errors)


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
    commands = [shlex.split(s["command"][2]) if s["command"][0] == "sh" else s["command"] for s in airflow.values()]
    first = [command[:2] for command in commands]
    assert sorted(first) == sorted(["airflow", command] for command in ("db", "api-server", "scheduler",
                                                                       "dag-processor", "triggerer"))  # fmt: skip


def test_conf_docker_matches_the_services(compose: dict[str, Any], settings: Settings) -> None:
    services = compose["services"]
    spark = json.loads(services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_LAKEHOUSE_SPARK"])
    assert spark == {"conn_type": "spark", "host": settings.spark.master}
    assert settings.spark.master == "spark://spark-master:7077"
    assert (settings.trino.host, settings.trino.port, settings.trino.http_scheme) == ("trino", 8443, "https")
    assert (
        f"http-server.https.port={settings.trino.port}" in (DOCKER / "trino" / "etc" / "config.properties").read_text()
    )
    assert settings.trino.user == "lakehouse" and not settings.trino.password.get_secret_value()
    ca_volume = next(v for v in services["airflow-scheduler"]["volumes"] if v.startswith("trino-ca:"))
    assert settings.trino.verify == ca_volume.split(":")[1] + "/trino.pem"
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


def _compose_errors(document: dict[str, Any], environ: dict[str, str]) -> list[str]:
    """What `docker compose config` refuses in a parsed compose file (YAML merge keys applied) given the variables
    `environ` (which must be those env.example documents): interpolation, the Compose schema, and the consistency
    checks that matter for this file (image or build, declared volumes and services, short port and volume syntax,
    healthchecks); also a host port published twice, which `docker compose up` refuses."""
    errors: list[str] = []
    resolved = _interpolated(document, environ, "", errors)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for error in Draft202012Validator(schema).iter_errors(resolved):
        errors.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
    if errors:
        return errors
    services, volumes = resolved["services"], resolved.get("volumes") or {}
    published: Counter[str] = Counter()
    for name, service in services.items():
        where = f"services.{name}"
        if "image" not in service and "build" not in service:
            errors.append(f"{where}: neither an image nor a build")
        depends = service.get("depends_on", [])
        errors += [f"{where}: depends on undefined service {other}" for other in depends if other not in services]
        errors += [f"{where}: undefined network {net}" for net in service.get("networks", []) if net not in
                   (resolved.get("networks") or {})]  # fmt: skip
        for port in service.get("ports", []):
            problem, host = _port(port)
            if problem:
                errors.append(f"{where}.ports: {port}: {problem}")
            published.update([host] if host else [])
        for volume in service.get("volumes", []):
            problem, named = _volume(volume)
            if problem:
                errors.append(f"{where}.volumes: {volume}: {problem}")
            elif named and named not in volumes:
                errors.append(f"{where}.volumes: {volume}: undefined volume {named}")
        healthcheck = service.get("healthcheck", {})
        test = healthcheck.get("test")
        if isinstance(test, list) and test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            errors.append(f'{where}.healthcheck.test: must start with "CMD", "CMD-SHELL" or "NONE"')
        for key in HEALTHCHECK_TIMES:
            if key in healthcheck and not DURATION.fullmatch(str(healthcheck[key])):
                errors.append(f"{where}.healthcheck.{key}: {healthcheck[key]} is not a duration")
    errors += [f"host port {port} is published by {count} services" for port, count in published.items() if count > 1]
    return errors


def _interpolated(value: Any, environ: dict[str, str], where: str, errors: list[str]) -> Any:
    """`value` with Compose's variable interpolation applied to every string in it; each unset required variable and
    each variable `environ` does not document is added to `errors`."""
    if isinstance(value, dict):
        return {key: _interpolated(item, environ, f"{where}.{key}".lstrip("."), errors) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolated(item, environ, f"{where}[{n}]", errors) for n, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op, argument = match["braced"] or match["bare"], match["op"] or "", match["argument"] or ""
        if name not in environ:
            errors.append(f"{where}: {name} is not in env.example")
            return ""
        found = environ[name]
        if op == ":?" and found == "":  # `?` alone refuses an unset variable only, and every one here is set
            errors.append(f"{where}: {name}: {argument or 'required'}")
        if op == ":-" and found == "":
            return argument
        if op in (":+", "+"):
            return argument if found != "" or op == "+" else ""
        return found

    return REFERENCE.sub(substitute, value)


def _port(port: object) -> tuple[str | None, str | None]:
    """What is wrong with a short-syntax port (None when nothing), and the host port it publishes (None: none)."""
    if isinstance(port, dict):  # the long syntax, which the schema checks
        published = port.get("published")
        return None, None if published is None else str(published)
    matched = SHORT_PORT.fullmatch(str(port))
    if not matched:
        return "not a port mapping ([IP:][HOST:]CONTAINER[/PROTOCOL])", None
    for part in filter(None, (matched["host"], matched["container"])):
        first, _, last = part.partition("-")
        if not 1 <= int(first) <= int(last or first) <= 65535:
            return f"no port or port range: {part}", None
    return None, matched["host"]


def _volume(volume: object) -> tuple[str | None, str | None]:
    """What is wrong with a short-syntax volume (None when nothing), and the named volume it mounts (None: a bind
    mount or an anonymous volume)."""
    if isinstance(volume, dict):  # the long syntax, which the schema checks
        return None, volume.get("source") if volume.get("type") == "volume" else None
    parts = str(volume).split(":")
    if len(parts) > 3:
        return "too many colons", None
    if "" in parts:
        return "empty section between colons", None
    if len(parts) == 1:
        source, target, options = None, parts[0], ""
    else:
        source, target, options = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if not target.startswith("/"):
        return "the target must be an absolute path in the container", None
    unknown = [option for option in options.split(",") if option and option not in VOLUME_OPTIONS]
    if unknown:
        return f"unknown option {unknown[0]}", None
    return None, source if source and source[0] not in "./~" else None


def test_every_published_port_is_on_loopback_only(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert {"minio", "spark-master", "spark-worker", "trino", "airflow-api-server"} <= {
        n for n, p in published.items() if p
    }
    for name, ports in published.items():
        for port in ports:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            else:
                assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+(/tcp)?", str(port)), (
                    f"{name} publishes {port} beyond loopback"
                )


def test_trino_serves_https_with_passwords_whose_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    etc = DOCKER / "trino" / "etc"
    config = _properties(etc / "config.properties")
    assert config["http-server.https.enabled"] == "true" and config["http-server.authentication.type"] == "PASSWORD"
    assert config["http-server.https.keystore.key"] == "${ENV:TRINO_KEYSTORE_PASSWORD}"
    assert config["internal-communication.shared-secret"] == "${ENV:TRINO_SHARED_SECRET}"
    assert config.get("http-server.authentication.allow-insecure-over-http", "false") == "false"
    authenticator = _properties(etc / "password-authenticator.properties")
    assert authenticator["password-authenticator.name"] == "file"
    trino = compose["services"]["trino"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in trino["volumes"]}
    generated = {config["http-server.https.keystore.path"], authenticator["file.password-file"]}
    assert {str(Path(path).parent) for path in generated} == {"/etc/trino/secrets"}
    assert mounts["/etc/trino/secrets"] == "trino-secrets"  # a volume the init services fill, nothing committed
    assert {"trino-tls", "trino-passwords"} <= set(trino["depends_on"])
    assert "8443" in trino["ports"][0] and "8080" not in " ".join(trino["ports"])  # plain HTTP is not published
    tls = (DOCKER / "trino" / "init" / "tls.sh").read_text()
    passwords = (DOCKER / "trino" / "init" / "passwords.sh").read_text()
    assert "-storepass:env TRINO_KEYSTORE_PASSWORD" in tls and "-storepass " not in tls
    assert "htpasswd -niB" in passwords and passwords.count("| htpasswd") == 2  # bcrypt, the password on stdin
    for user in ("lakehouse", "analyst"):
        assert f"htpasswd -niBC 10 {user}" in passwords


# What a committed secret would look like: a key/password/secret property or variable given a literal value.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(password|passwd|secret|access[_.-]?key|secret[_.-]?key|aws-access-key|aws-secret-key|token|shared-secret)"
    r"[\w.-]*\s*[:=]\s*[\"']?(?P<value>[^\s\"'#]+)"
)
_SECRET_VALUE_OK = re.compile(r"\$\{[^}]+\}|\$\w+|\"?\$\{?\w+\}?\"?|SecretStr.*|\*+|\w+\(.*|")


def test_no_literal_secret_is_committed_in_docker_or_conf() -> None:
    """Anything that looks like a key, password or secret given a value in docker/ or conf/ is a reference to the
    environment (${VAR}, ${ENV:VAR}, $VAR) or a property name; env.example leaves every value empty."""
    files = [path for folder in (DOCKER, REPO / "conf") for path in folder.rglob("*") if path.is_file()]
    files = [path for path in files if path.name != ".env"]
    assert files
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for found in _SECRET_ASSIGNMENT.finditer(re.sub(r"\$\{[^}]*\}", "${}", line)):
                value = found["value"].rstrip(",;")
                literal = not _SECRET_VALUE_OK.fullmatch(value) and not value.startswith(("${", "$", "/", "-"))
                assert not literal or value in _NOT_SECRETS, f"{path.name}:{number}: a literal secret? {line.strip()}"


# Values the scan finds that are names, not secrets.
_NOT_SECRETS = {"PASSWORD", "file", "true", "false", "lakehouse-rw"}


def test_the_services_use_the_non_root_minio_user(compose: dict[str, Any]) -> None:
    services = compose["services"]
    root = {"${S3_ROOT_USER}", "${S3_ROOT_PASSWORD}"}
    assert services["minio"]["environment"]["MINIO_ROOT_USER"].startswith("${S3_ROOT_USER")
    for name, service in services.items():
        values = {str(value).split(":?")[0].rstrip("}") + "}" for value in service.get("environment", {}).values()}
        if name not in {"minio", "minio-init"}:
            assert not values & root, f"{name} has MinIO's root credentials"
    lakehouse_env = services["airflow-scheduler"]["environment"]
    assert lakehouse_env["LAKEHOUSE__S3__ACCESS_KEY"].startswith("${S3_ACCESS_KEY")
    assert services["trino"]["environment"]["S3_ACCESS_KEY"] == "${S3_ACCESS_KEY}"
    script = (DOCKER / "minio" / "minio-init.sh").read_text()
    assert 'mc admin user add lake "$S3_ACCESS_KEY"' in script and "mc admin policy attach lake" in script
    assert "MC_HOST_lake=" in script and "MINIO_ROOT_PASSWORD" not in script.split("MC_HOST_lake=")[0].split("\n")[-1]


def test_the_trino_password_reaches_only_the_airflow_containers(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        has = "LAKEHOUSE__TRINO__PASSWORD" in service.get("environment", {})
        assert has == (name.startswith("airflow-")), name


def _properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_airflow_init_sets_the_writers_pool_of_one_slot(compose: dict[str, Any]) -> None:
    """The pool the lake-writing tasks run in exists before the scheduler starts, with one slot, as `lakehouse
    airflow` sets it locally."""
    init = compose["services"]["airflow-init"]["command"]
    assert init[:2] == ["sh", "-c"]
    steps = [shlex.split(step) for step in init[2].split("&&")]
    assert steps[0] == ["airflow", "db", "migrate"]
    assert steps[1][:5] == ["airflow", "pools", "set", WRITER_POOL, "1"]
    assert compose["services"]["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] == \
        "service_completed_successfully"  # fmt: skip
