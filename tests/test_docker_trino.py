"""docker/'s Trino security, run for real outside Docker: the server of `lakehouse trino` started with docker/'s own
config.properties, password-authenticator.properties, access-control.properties and rules.json, the keystore made
by docker/'s trino-tls script (keytool) and a password file as trino-passwords writes it (bcrypt, cost 10, `$2y$`).
Only paths and ports are moved (to a temp folder, free ports on loopback): the security settings are the files'."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import certifi
import pytest
import requests
import trino.auth
import trino.dbapi
from trino.exceptions import HttpError, TrinoConnectionError, TrinoUserError

from lakehouse.config import Settings, load_settings
from lakehouse.trino_client import ANALYST, BI, CATALOG, http_session, query
from lakehouse.trino_server import _config_files, _launcher, _paths, _wait_until_answering, install, stop
from tests.conftest import CONF, REPO, free_port
from tests.conftest import test_environ as environment_for

DOCKER_TRINO = REPO / "docker" / "trino"
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Server:
    """The running server: the pipeline's settings to reach it over https, its ports, the users' passwords and the
    certificate the trino-tls script exported."""

    settings: Settings
    https_port: int
    http_port: int
    passwords: dict[str, str]
    certificate: Path


def _moved(name: str, etc: Path, secrets_dir: Path) -> str:
    """docker/trino/etc/NAME with the paths of the image (/etc/trino, its secrets volume) moved here."""
    text = (DOCKER_TRINO / "etc" / name).read_text()
    return text.replace("/etc/trino/secrets/", f"{secrets_dir}/").replace("/etc/trino/", f"{etc}/")


def _docker_config(etc: Path, secrets_dir: Path, http_port: int, https_port: int) -> str:
    """docker/'s config.properties with its paths and ports moved here."""
    text = _moved("config.properties", etc, secrets_dir)
    text = text.replace("http-server.http.port=8080", f"http-server.http.port={http_port}")
    text = text.replace("discovery.uri=http://localhost:8080", f"discovery.uri=http://127.0.0.1:{http_port}")
    return text.replace("http-server.https.port=8443", f"http-server.https.port={https_port}")


def _run_tls_script(secrets_dir: Path, ca_dir: Path, environ: dict[str, str]) -> None:
    """docker/trino/init/tls.sh with its volumes moved here (and, unless root, without the chown to Trino's uid)."""
    script = (DOCKER_TRINO / "init" / "tls.sh").read_text()
    script = script.replace("/secrets/", f"{secrets_dir}/").replace("/ca/", f"{ca_dir}/")
    if os.getuid() != 0:
        script = re.sub(r"^chown .*$", ":", script, flags=re.MULTILINE)
    subprocess.run(["sh", "-c", script], env=environ, check=True, capture_output=True, timeout=120)


def _password_file(passwords: dict[str, str]) -> str:
    """What docker/trino/init/passwords.sh writes: `user:hash` lines, bcrypt of cost 10 as htpasswd -B spells it."""
    lines = []
    for user, password in passwords.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        lines.append(f"{user}:{hashed.replace('$2b$', '$2y$', 1)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("docker-trino")
    http_port, https_port = free_port(), free_port()
    passwords = {"lakehouse": secrets.token_urlsafe(16), ANALYST: secrets.token_urlsafe(16)}
    keystore_password, shared_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    base = {**environment_for(folder / "lake"), "LAKEHOUSE__TRINO__HEAP": "1G",
            "LAKEHOUSE__TRINO__PORT": str(http_port), "LAKEHOUSE__TRINO__STATE_DIR": str(folder / "trino")}  # fmt: skip
    managed = load_settings(CONF, base)
    install(managed)
    etc, secrets_dir, ca_dir = _paths(managed).etc, folder / "secrets", folder / "ca"
    for made in (etc, secrets_dir, ca_dir):
        made.mkdir(parents=True)
    # The parts docker/ leaves to the image (node, JVM, logging, the catalog): as `lakehouse trino` writes them.
    for name, text in _config_files(managed).items():
        if name in ("node.properties", "jvm.config", "log.properties") or name.startswith("catalog/"):
            (etc / name).parent.mkdir(parents=True, exist_ok=True)
            (etc / name).write_text(text)
    (etc / "config.properties").write_text(_docker_config(etc, secrets_dir, http_port, https_port))
    for name in ("password-authenticator.properties", "access-control.properties", "rules.json"):
        text = (DOCKER_TRINO / "etc" / name).read_text()
        (etc / name).write_text(
            text.replace("/etc/trino/secrets/", f"{secrets_dir}/").replace("/etc/trino/", f"{etc}/")
        )
    (Path(managed.lake.root)).mkdir(parents=True)
    _run_tls_script(secrets_dir, ca_dir, {"PATH": os.environ["PATH"], "TRINO_KEYSTORE_PASSWORD": keystore_password})
    (secrets_dir / "password.db").write_text(_password_file(passwords))
    # Trino reads these through ${ENV:...} of config.properties, as the trino service gets them from docker/.env.
    monkeypatch_module.setenv("TRINO_KEYSTORE_PASSWORD", keystore_password)
    monkeypatch_module.setenv("TRINO_SHARED_SECRET", shared_secret)
    # A CA bundle named by the environment, as on many machines: the configured certificate must still be the one
    # checked (requests lets the variable win over a session's own `verify`).
    monkeypatch_module.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    started = _launcher(managed, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    certificate = ca_dir / "trino.pem"
    client = load_settings(CONF, {**base, "LAKEHOUSE__TRINO__HTTP_SCHEME": "https",
                                  "LAKEHOUSE__TRINO__PORT": str(https_port), "LAKEHOUSE__TRINO__MANAGED": "false",
                                  "LAKEHOUSE__TRINO__VERIFY": str(certificate),
                                  "LAKEHOUSE__TRINO__PASSWORD": passwords["lakehouse"]})  # fmt: skip
    try:
        _wait_until_answering(client)
        yield Server(client, https_port, http_port, passwords, certificate)
    finally:
        stop(managed)
        shutil.rmtree(secrets_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _as(server: Server, user: str, password: str, sql: str, verify: bool | str | None = None) -> list:
    session = http_session(str(server.certificate) if verify is None else verify)
    with trino.dbapi.connect(host="127.0.0.1", port=server.https_port, user=user, http_scheme="https",
                             auth=trino.auth.BasicAuthentication(user, password), catalog=CATALOG,
                             http_session=session) as connection:  # fmt: skip
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()


def test_the_pipeline_user_runs_queries_over_https_with_its_password(server: Server) -> None:
    """The lakehouse client as conf/docker.yaml configures it (https, the password from the environment, the
    exported certificate as the one to trust)."""
    assert query(server.settings, "SELECT 1 + 1").rows == [(2,)]
    assert query(server.settings, "SELECT current_user").rows == [("lakehouse",)]


def test_a_wrong_or_missing_password_is_refused(server: Server) -> None:
    with pytest.raises(HttpError, match="401"):
        _as(server, "lakehouse", server.passwords[ANALYST], "SELECT 1")
    with pytest.raises(HttpError, match="401"):
        _as(server, "someone", "guess", "SELECT 1")
    statement = f"https://127.0.0.1:{server.https_port}/v1/statement"
    answer = requests.post(statement, data="SELECT 1", headers={"X-Trino-User": "lakehouse"},
                           verify=str(server.certificate), timeout=30)  # fmt: skip
    assert answer.status_code == 401


def test_plain_http_takes_no_user_from_outside(server: Server) -> None:
    """The http port serves the node's own signed calls only: a client there is refused, with or without a user."""
    answer = requests.post(f"http://127.0.0.1:{server.http_port}/v1/statement", data="SELECT 1",
                           headers={"X-Trino-User": "lakehouse"}, timeout=30)  # fmt: skip
    assert answer.status_code in (401, 403), answer.text[:300]


def test_the_certificate_is_checked(server: Server) -> None:
    """A self-signed certificate no system CA vouches for: a client that checks against the system's CAs refuses
    the server; the lakehouse client, told the exported certificate, accepts it (above)."""
    with pytest.raises(TrinoConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        _as(server, "lakehouse", server.passwords["lakehouse"], "SELECT 1", verify=True)


def test_the_analyst_signs_in_with_its_own_password_and_reads_only_what_rules_allow(server: Server) -> None:
    assert _as(server, ANALYST, server.passwords[ANALYST], "SELECT current_user") == [[ANALYST]]
    with pytest.raises(TrinoUserError, match="Access Denied"):
        _as(server, ANALYST, server.passwords[ANALYST], f"CREATE SCHEMA {CATALOG}.{BI}_x")
    with pytest.raises(TrinoUserError, match="Access Denied"):
        _as(server, ANALYST, server.passwords[ANALYST], "SET SESSION query_max_run_time = '1h'")
