"""Settings: the YAML file, LAKEHOUSE__SECTION__KEY overrides, and one-line errors for anything wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.config import load_settings
from lakehouse.errors import LakehouseError
from lakehouse.tables import lake_root
from tests.conftest import CONF, REPO


def test_default_config_is_the_embedded_local_lake() -> None:
    settings = load_settings(CONF, {})
    assert (settings.lake.root, settings.spark.master) == (str(REPO / "lake"), "local[*]")
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
        ({"LAKEHOUSE__LAKE__ROOT": "s3://b/lake"}, "lake.root: Value error, 's3://b/lake': Spark reads S3 as s3a://, "
                                                   "write s3a://b/lake (from LAKEHOUSE__LAKE__ROOT)"),
        ({"LAKEHOUSE__LAKE__ROOT": "hdfs://nn/lake"}, "lake.root: Value error, 'hdfs://nn/lake': hdfs:// is not "
                                                      "supported, use a local path, file:///path or s3a://bucket"),
        ({"LAKEHOUSE__LAKE__ROOT": "s3a:///lake"}, "lake.root: Value error, 's3a:///lake': names no bucket"),
        ({"LAKEHOUSE__SPARK__MASTER": "lokal[2]"}, "spark.master: Value error, 'lokal[2]' is not a Spark master URL: "
                                                   "use local, local[N], local[*], local[N,F], local-cluster[N,C,M], "
                                                   "spark://host:port[,host:port], yarn or k8s://URL"),
        ({"LAKEHOUSE__SPARK__MASTER": "local[0]"}, "spark.master: Value error, 'local[0]': its counts"),
        ({"LAKEHOUSE__SPARK__MASTER": "local[2,0]"}, "'local[2,0]': its counts"),
        ({"LAKEHOUSE__SPARK__MASTER": "local-cluster[2,0,1024]"}, "its counts"),
        ({"LAKEHOUSE__SPARK__MASTER": "spark://nohost"}, "'spark://nohost' is not a Spark master URL"),
        ({"LAKEHOUSE__SPARK__MASTER": "spark://h:1,nohost"}, "'spark://h:1,nohost' is not a Spark master URL"),
        ({"LAKEHOUSE__SPARK__MASTER": "spark://h:70000"}, "'spark://h:70000': a port must be in 1..65535"),
        ({"LAKEHOUSE__SPARK__MASTER": "k8s://"}, "'k8s://' is not a Spark master URL"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(LakehouseError) as caught:
        load_settings(CONF, environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "master",
    ["local", "local[1]", "local[*]", "local[4,2]", "local[*, 3]", "local-cluster[2, 1, 1024]", "spark://h:7077",
     "spark://a:7077,b.example.com:7078", "yarn", "k8s://https://k8s.example.com:443"],
)  # fmt: skip
def test_every_kind_of_spark_master_is_accepted(master: str) -> None:
    assert load_settings(CONF, {"LAKEHOUSE__SPARK__MASTER": f"'{master}'"}).spark.master == master


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


def _settings_file(folder: Path, text: str, name: str = "x.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.mark.parametrize("relative_conf", [False, True], ids=["absolute-conf", "relative-conf"])
def test_relative_paths_in_a_conf_folder_resolve_against_its_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative_conf: bool
) -> None:
    conf = _settings_file(tmp_path / "proj" / "conf", (
        "lake:\n  root: ./lake\n"
        "spark:\n  ivy_cache: .cache/ivy\n  log_file: state/logs/spark.log\n"
        "quality:\n  suites: ../shared/expectations\n  dir: ./state/quality\n"
        f"trino:\n  home: {tmp_path / 'opt' / 'trino'}\n  views_dir: sql/\n"
    ))  # fmt: skip
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    settings = load_settings(Path("../proj/conf/x.yaml") if relative_conf else conf, {})
    assert settings.lake.root == str(tmp_path / "proj" / "lake")
    assert settings.spark.ivy_cache == str(tmp_path / "proj" / ".cache" / "ivy")
    assert settings.spark.log_file == str(tmp_path / "proj" / "state" / "logs" / "spark.log")
    assert settings.quality.suites == str(tmp_path / "shared" / "expectations")
    assert settings.quality.dir == str(tmp_path / "proj" / "state" / "quality")
    assert settings.trino.home == str(tmp_path / "opt" / "trino")
    assert settings.trino.views_dir == str(tmp_path / "proj" / "sql")
    assert lake_root(settings) == f"file://{tmp_path}/proj/lake"


def test_a_file_outside_a_conf_folder_resolves_against_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _settings_file(tmp_path / "settings", "lake:\n  root: lake\nairflow:\n  dags_folder: ../dags\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(conf, {})
    assert settings.lake.root == str(tmp_path / "settings" / "lake")
    assert settings.airflow.dags_folder == str(tmp_path / "dags")
    assert settings.airflow.home == str(tmp_path / "settings" / "state" / "airflow")


def test_defaults_resolve_against_the_project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _settings_file(tmp_path / "proj" / "conf", "spark:\n  master: local[1]\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(conf, {})
    project = tmp_path / "proj"
    assert settings.lake.root == str(project / "lake")
    assert settings.spark.ivy_cache == str(project / ".cache" / "ivy")
    assert settings.trino.home == str(project / ".cache" / "trino")
    assert settings.spark.log_file == str(project / "state/logs/spark.log")
    assert settings.quality.suites == str(project / "expectations")
    assert (settings.trino.state_dir, settings.trino.views_dir) == (str(project / "state/trino"), str(project / "sql"))
    assert settings.airflow.home == str(project / "state" / "airflow")
    assert settings.airflow.dags_folder == str(project / "dags")
    assert settings.quality.dir == ""


def test_an_environment_override_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _settings_file(tmp_path / "proj" / "conf", "spark:\n  ivy_cache: ./.cache/ivy\n  log_file: ./spark.log\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    settings = load_settings(conf, {"LAKEHOUSE__LAKE__ROOT": "data/lake", "LAKEHOUSE__SPARK__LOG_FILE": "./logs/s.log",
                                    "LAKEHOUSE__QUALITY__DIR": "./state/quality"})  # fmt: skip
    assert settings.lake.root == str(tmp_path / "work" / "data" / "lake")
    assert settings.spark.log_file == str(tmp_path / "work" / "logs" / "s.log")
    assert settings.quality.dir == str(tmp_path / "work" / "state" / "quality")
    # Keys of the same section that the file sets still resolve against the project.
    assert settings.spark.ivy_cache == str(tmp_path / "proj" / ".cache" / "ivy")


@pytest.mark.parametrize("from_env", [False, True], ids=["file", "env"])
def test_empty_paths_keep_their_meaning(tmp_path: Path, from_env: bool) -> None:
    text = "" if from_env else 'spark:\n  log_file: ""\nquality:\n  dir: ""\n'
    environ = {"LAKEHOUSE__SPARK__LOG_FILE": "", "LAKEHOUSE__QUALITY__DIR": ""} if from_env else {}
    settings = load_settings(_settings_file(tmp_path / "conf", text), environ)
    assert (settings.spark.log_file, settings.quality.dir) == ("", "")


@pytest.mark.parametrize("from_env", [False, True], ids=["file", "env"])
@pytest.mark.parametrize("uri", ["s3a://b/p", "file:///data/lake"])
def test_uris_are_left_alone(tmp_path: Path, from_env: bool, uri: str) -> None:
    text = "" if from_env else f"lake:\n  root: {uri}\n"
    environ = {"LAKEHOUSE__LAKE__ROOT": uri} if from_env else {}
    settings = load_settings(_settings_file(tmp_path / "conf", text), environ)
    assert settings.lake.root == uri
    assert lake_root(settings) == uri
