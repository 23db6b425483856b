"""Settings: the YAML file, LAKEHOUSE__SECTION__KEY overrides, and one-line errors for anything wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.config import load_settings
from lakehouse.errors import LakehouseError
from tests.conftest import CONF


def test_default_config_is_the_embedded_local_lake() -> None:
    settings = load_settings(CONF, {})
    assert (settings.lake.root, settings.spark.master) == ("./lake", "local[*]")
    assert settings.ingest.user_id_paths == ("data.attributes.user_id", "meta.user_id")


def test_environment_overrides_any_key_with_yaml_values() -> None:
    settings = load_settings(
        CONF,
        {
            "LAKEHOUSE__LAKE__ROOT": "s3a://bucket/prefix",
            "LAKEHOUSE__INGEST__MAX_LINE_BYTES": "2048",
            "LAKEHOUSE__INGEST__COUNTRY_PATHS": "[meta.geo.country]",
            "LAKEHOUSE__SPARK__CONF": "{spark.executor.memory: 8g}",
            "OTHER": "ignored",
        },
    )
    assert settings.lake.root == "s3a://bucket/prefix"
    assert settings.ingest.max_line_bytes == 2048
    assert settings.ingest.country_paths == ("meta.geo.country",)
    assert settings.spark.conf == {"spark.executor.memory": "8g"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LAKEHOUSE__INGEST__MAX_LINE_BYTES": "big"},
         "ingest.max_line_bytes: Input should be a valid integer, unable to parse string as an integer "
         "(from LAKEHOUSE__INGEST__MAX_LINE_BYTES)"),
        ({"LAKEHOUSE__INGEST__MAX_LINES": "5"}, "ingest.max_lines: unknown key (from LAKEHOUSE__INGEST__MAX_LINES)"),
        ({"LAKEHOUSE__LAKEROOT": "x"}, "LAKEHOUSE__LAKEROOT: expected the form LAKEHOUSE__SECTION__KEY"),
        ({"LAKEHOUSE__NOPE__X": "1"}, "nope: unknown key (from LAKEHOUSE__NOPE__X)"),
        ({"LAKEHOUSE__INGEST__MIN_EVENT_TIME": "2000-01-01T00:00:00"}, "needs a time zone"),
        ({"LAKEHOUSE__INGEST__USER_ID_PATHS": "[data..x]"}, "'data..x' is not a dotted JSON path"),
        ({"LAKEHOUSE__SPARK__SHUFFLE_PARTITIONS": "0"}, "spark.shuffle_partitions: Input should be greater than"),
        ({"LAKEHOUSE__LAKE__ROOT": " "}, "lake.root: Value error, must not be empty"),
        ({"LAKEHOUSE__TRINO__PORT": "70000"}, "trino.port: Input should be less than or equal to 65535"),
        ({"LAKEHOUSE__TRINO__HEAP": "4 GB"}, "trino.heap: String should match pattern"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(LakehouseError) as caught:
        load_settings(CONF, environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lake: [1, 2\n", "not valid YAML"),
        ("- a\n", "expected a mapping"),
        ("lake:\n  rot: x\n", "lake.rot: unknown key"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LakehouseError, match=message):
        load_settings(path, {})


def test_missing_file() -> None:
    with pytest.raises(LakehouseError, match="config file not found: nowhere.yaml"):
        load_settings("nowhere.yaml", {})
