"""How `trino_client.connect` talks to a server with authentication (fast: no server is started): a password is
sent as HTTP basic auth over https only, with the configured certificate check; settings refuse a password in a file,
a password over http, and a managed server beyond loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trino.auth
from pydantic import SecretStr

from lakehouse.config import load_settings
from lakehouse.errors import LakehouseError
from lakehouse.trino_client import connect, url
from tests.conftest import CONF, REPO

DOCKER_CONF = REPO / "conf" / "docker.yaml"


def test_no_password_means_no_authentication_over_http() -> None:
    settings = load_settings(CONF, {})
    connection = connect(settings)
    assert connection.auth is None and connection.http_scheme == "http" and connection.user == "lakehouse"
    assert url(settings.trino) == f"http://127.0.0.1:{settings.trino.port}"


def test_a_password_is_sent_as_basic_auth_over_https_with_the_configured_certificate() -> None:
    settings = load_settings(DOCKER_CONF, {"LAKEHOUSE__TRINO__PASSWORD": "0123456789"})
    connection = connect(settings)
    assert connection.auth == trino.auth.BasicAuthentication("lakehouse", "0123456789")  # digits stay a string
    assert connection.http_scheme == "https" and connection._http_session.verify == settings.trino.verify
    assert url(settings.trino) == "https://trino:8443"
    assert "0123456789" not in repr(settings)


def test_a_password_over_http_is_refused_in_one_line() -> None:
    with pytest.raises(LakehouseError, match=r"trino: .*only sent over https") as refused:
        load_settings(CONF, {"LAKEHOUSE__TRINO__PASSWORD": "x"})
    assert "\n" not in str(refused.value) and "x'" not in str(refused.value)
    settings = load_settings(CONF, {})
    trino_settings = settings.trino.model_construct(**{**dict(settings.trino), "password": SecretStr("x")})
    unchecked = settings.model_copy(update={"trino": trino_settings})  # past the settings' own check
    with pytest.raises(LakehouseError, match="only sent over https") as refused:
        connect(unchecked)
    assert "\n" not in str(refused.value)


def test_a_password_in_a_file_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("trino:\n  http_scheme: https\n  password: hunter2\n")
    with pytest.raises(LakehouseError, match="never written in a file.*LAKEHOUSE__TRINO__PASSWORD") as refused:
        load_settings(conf, {})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("host", ["0.0.0.0", "trino", "10.0.0.5"])
def test_a_managed_server_beyond_loopback_is_refused(host: str) -> None:
    with pytest.raises(LakehouseError, match="its host must be one of 127.0.0.1, localhost"):
        load_settings(CONF, {"LAKEHOUSE__TRINO__HOST": host, "LAKEHOUSE__TRINO__MANAGED": "true"})


def test_a_server_run_elsewhere_may_be_anywhere() -> None:
    settings = load_settings(
        CONF, {"LAKEHOUSE__TRINO__HOST": "trino.example.com", "LAKEHOUSE__TRINO__MANAGED": "false"}
    )
    assert settings.trino.host == "trino.example.com"
