"""Loads settings from a YAML file in conf/, with LAKEHOUSE__SECTION__KEY environment overrides, into typed values;
relative paths resolve against the file's project folder, or the working directory for an environment variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from lakehouse.errors import LakehouseError

DEFAULT_CONF = "conf/local.yaml"
ENV_PREFIX = "LAKEHOUSE__"
# The hosts a server without authentication may listen on (trino.managed).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_JSON_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Spark's own master URL forms (SparkContext.createTaskScheduler), whose counts must be at least 1.
_LOCAL_MASTER = re.compile(r"local\[(?P<threads>[0-9]+|\*)(\s*,\s*(?P<failures>[0-9]+))?\]")
_LOCAL_CLUSTER_MASTER = re.compile(r"local-cluster\[\s*(?P<workers>[0-9]+)\s*,\s*(?P<cores>[0-9]+)\s*,\s*"
                                   r"(?P<memory_mb>[0-9]+)\s*\]")  # fmt: skip
_STANDALONE_MASTER = re.compile(r"spark://(?P<nodes>[A-Za-z0-9._-]+:[0-9]+(,[A-Za-z0-9._-]+:[0-9]+)*)")
_K8S_MASTER = re.compile(r"k8s://\S+")


class _LocalPath:
    """Marks a field as a local path: `load_settings` makes a relative one absolute (empty strings and URIs stay)."""


PathStr = Annotated[str, _LocalPath()]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeSettings(_Section):
    root: PathStr = "./lake"
    # One lake-writing command at a time (lakehouse.writer_lock): auto takes the lock on s3a:// only, where Delta's
    # log store is safe within one Spark driver; false where the log store itself excludes a second writer.
    writer_lock: Literal["auto"] | bool = "auto"
    lock_lease_seconds: int = Field(default=60, ge=2, le=3600)
    lock_wait_seconds: int = Field(default=3600, ge=0)

    @field_validator("writer_lock", mode="before")
    @classmethod
    def _auto_or_boolean(cls, value: Any) -> Any:
        if value != "auto" and not isinstance(value, bool):
            raise ValueError(f"must be auto, true or false, got {value!r}")
        return value

    @field_validator("root")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("root")
    @classmethod
    def _supported_scheme(cls, value: str) -> str:
        """A local path, file:///path or s3a://bucket/prefix: the URIs every engine of the lake reads alike."""
        scheme = value.split("://", 1)[0] if _URI.match(value) else ""
        if scheme.lower() == "s3":
            raise ValueError(f"{value!r}: Spark reads S3 as s3a://, write s3a://{value.split('://', 1)[1]}")
        if scheme not in ("", "file", "s3a"):
            raise ValueError(f"{value!r}: {scheme}:// is not supported, use a local path, file:///path or s3a://bucket")
        if scheme == "s3a" and not value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(f"{value!r}: names no bucket, use s3a://bucket/prefix")
        return value


class SparkSettings(_Section):
    master: str = "local[*]"
    app_name: str = "lakehouse"
    driver_memory: str = Field(default="4g", pattern=r"^[0-9]+[kmgt]$")
    shuffle_partitions: int = Field(default=8, ge=1)
    ivy_cache: PathStr = "./.cache/ivy"
    log_file: PathStr = "./state/logs/spark.log"
    log_level: str = Field(default="WARN", pattern=r"^(ALL|DEBUG|ERROR|FATAL|INFO|OFF|TRACE|WARN)$")
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("master")
    @classmethod
    def _master_url(cls, value: str) -> str:
        """The master URLs Spark accepts, checked here rather than by a JVM that fails to start."""
        counts = _LOCAL_MASTER.fullmatch(value) or _LOCAL_CLUSTER_MASTER.fullmatch(value)
        nodes = _STANDALONE_MASTER.fullmatch(value)
        if not (value in ("local", "yarn") or counts or nodes or _K8S_MASTER.fullmatch(value)):
            raise ValueError(f"{value!r} is not a Spark master URL: use local, local[N], local[*], local[N,F], "
                             "local-cluster[N,C,M], spark://host:port[,host:port], yarn or k8s://URL")  # fmt: skip
        if counts and any(count != "*" and int(count) < 1 for count in counts.groupdict().values() if count):
            raise ValueError(f"{value!r}: its counts (threads, failures, workers, cores, memory) must be at least 1")
        ports = [int(node.rsplit(":", 1)[1]) for node in nodes["nodes"].split(",")] if nodes else []
        if not all(1 <= port <= 65_535 for port in ports):
            raise ValueError(f"{value!r}: a port must be in 1..65535")
        return value


class IngestSettings(_Section):
    extensions: tuple[str, ...] = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
    max_line_bytes: int = Field(default=1_048_576, ge=1)
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_seconds: int = Field(default=86_400, ge=0)
    user_id_paths: tuple[str, ...] = ("data.attributes.user_id", "meta.user_id")
    country_paths: tuple[str, ...] = ("data.attributes.country", "meta.country")
    max_batch_bytes: int = Field(default=1024**3, ge=1)
    max_batch_files: int = Field(default=100_000, ge=1)
    max_file_expanded_bytes: int = Field(default=16 * 1024**3, ge=1)
    dedup_window_days: int = Field(default=7, ge=0, le=366)
    settle_seconds: int = Field(default=2, ge=0, le=3600)

    @field_validator("min_event_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2000-01-01T00:00:00Z")
        return value

    @field_validator("user_id_paths", "country_paths")
    @classmethod
    def _dotted_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not _JSON_PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted JSON path like data.attributes.user_id")
        return value


class QualitySettings(_Section):
    suites: PathStr = "./expectations"
    # Empty: `_quality` under the lake root (which must then be local: GX writes its files locally).
    dir: PathStr = ""
    countries: tuple[str, ...] = ("DE", "US", "GB", "FR", "ES", "IT", "NL")
    country_mostly: float = Field(default=0.95, ge=0, le=1)
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)


class TrinoSettings(_Section):
    version: int = Field(default=476, ge=476)
    home: PathStr = "./.cache/trino"
    state_dir: PathStr = "./state/trino"
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65_535)
    heap: str = Field(default="4G", pattern=r"^[0-9]+[MG]$")
    query_max_memory: str = Field(default="2GB", pattern=r"^[0-9]+[MG]B$")
    query_max_memory_per_node: str = Field(default="1GB", pattern=r"^[0-9]+[MG]B$")
    user: str = Field(default="lakehouse", pattern=r"^[a-z_][a-z0-9_-]*$")
    start_timeout_seconds: int = Field(default=180, ge=1)
    views_dir: PathStr = "./sql"
    # False: the server at host:port is run by someone else (docker/compose.yaml's trino service, a cluster);
    # `lakehouse trino start` then only waits for it to answer and `stop` refuses.
    managed: bool = True
    # How the client reaches the server: "https" for one with authentication (docker/compose.yaml's trino service).
    http_scheme: Literal["http", "https"] = "http"
    # The pipeline user's password, only from the environment (LAKEHOUSE__TRINO__PASSWORD), never in a file; empty:
    # none sent (a server trusting the asserted user name: the managed one, on loopback only). Needs https.
    password: SecretStr = SecretStr("")
    # How the client checks the server's TLS certificate: true (the system's CAs), false (not at all), or the path of
    # a CA bundle / the server's own certificate (PEM).
    verify: bool | str = True

    @model_validator(mode="after")
    def _authenticated_beyond_loopback(self) -> TrinoSettings:
        if self.password.get_secret_value() and self.http_scheme != "https":
            raise ValueError("a password is only sent over https: set trino.http_scheme: https")
        if self.managed and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"the server `lakehouse trino` manages has no TLS nor passwords: its host must be one of "
                f"{', '.join(LOOPBACK_HOSTS)}, not {self.host!r} (run a server with https and passwords yourself and "
                f"set trino.managed: false)"
            )
        return self


class AggregateSettings(_Section):
    # Days are rebuilt in passes of at most this many events (Delta's per-file row counts tell how many a day has; a
    # bigger day is a pass of its own): what a backfill of months holds in memory at once is one pass's.
    max_events_per_pass: int = Field(default=20_000_000, ge=1)


class AirflowSettings(_Section):
    home: PathStr = "./state/airflow"
    dags_folder: PathStr = "./dags"
    port: int = Field(default=8080, ge=1, le=65_535)
    parallelism: int = Field(default=2, ge=1)


class MaintenanceSettings(_Section):
    # Files a table no longer references are deleted once this old: readers of an older version need them, and so
    # does an ingest batch finished after a crash (it deduplicates against the version it was planned with). Delta's
    # own floor is 7 days.
    vacuum_retention_hours: int = Field(default=168, ge=168)


class S3Settings(_Section):
    # How Spark (S3A), delta-rs and Trino reach a lake on s3a://; unused for a local lake.
    # Empty: AWS itself; an S3-compatible server: its URL (http:// allows plain HTTP).
    endpoint: str = Field(default="", pattern=r"^(https?://\S+)?$")
    region: str = Field(default="us-east-1", min_length=1)
    path_style_access: bool = False
    # Empty: each engine's default AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, instance profile).
    access_key: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")

    def as_properties(self, region: str, endpoint: str, keys: tuple[str, str], path_style: str = "") -> dict[str, str]:
        """These settings under one engine's property names (`path_style` left out when empty); the keys only when
        given, so that without them each engine takes its default AWS credential chain."""
        properties = {region: self.region}
        if path_style:
            properties[path_style] = str(self.path_style_access).lower()
        if self.endpoint:
            properties[endpoint] = self.endpoint
        if self.access_key.get_secret_value():
            properties |= {keys[0]: self.access_key.get_secret_value(), keys[1]: self.secret_key.get_secret_value()}
        return properties

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> S3Settings:
        if bool(self.access_key.get_secret_value()) != bool(self.secret_key.get_secret_value()):
            raise ValueError("access_key and secret_key go together")
        return self


class Settings(_Section):
    lake: LakeSettings = LakeSettings()
    spark: SparkSettings = SparkSettings()
    ingest: IngestSettings = IngestSettings()
    quality: QualitySettings = QualitySettings()
    aggregate: AggregateSettings = AggregateSettings()
    trino: TrinoSettings = TrinoSettings()
    airflow: AirflowSettings = AirflowSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    s3: S3Settings = S3Settings()


def load_settings(path: str | Path = DEFAULT_CONF, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the YAML file at `path`, overridden by LAKEHOUSE__SECTION__KEY variables of `environ`.

    A relative path (a `PathStr` field) written in the file, or a default the file does not set, is resolved against
    the project folder the file belongs to (`project_folder`); one given by an environment variable against the
    working directory, as a shell user expects. Resolved paths are absolute; empty strings and URIs stay as they are.
    """
    raw = _read_yaml(Path(path))
    trino = raw.get("trino")
    if isinstance(trino, dict) and trino.get("password"):
        raise LakehouseError(f"{path}: trino.password: a password is never written in a file: set it in the "
                             f"environment, {ENV_PREFIX}TRINO__PASSWORD")  # fmt: skip
    sources = _apply_overrides(raw, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise LakehouseError(_one_line(path, exc, sources)) from None
    return _resolve_paths(settings, project_folder(path), sources)


def project_folder(path: str | Path) -> Path:
    """The folder a settings file's relative paths are relative to: the parent of its folder when that is named
    `conf` (<project>/conf/local.yaml: <project>), else the file's own folder."""
    folder = Path(os.path.abspath(path)).parent
    return folder.parent if folder.name == "conf" else folder


def _resolve_paths(settings: Settings, project: Path, sources: dict[tuple[str, ...], str]) -> Settings:
    """`settings` with every relative `PathStr` made absolute: against the working directory when an environment
    variable set it (`sources`), against `project` otherwise."""
    sections = {}
    for name in Settings.model_fields:
        section = getattr(settings, name)
        resolved = {
            key: _absolute(getattr(section, key), Path.cwd() if (name, key) in sources else project)
            for key, field in type(section).model_fields.items()
            if any(isinstance(marker, _LocalPath) for marker in field.metadata)
        }
        if resolved:
            sections[name] = section.model_copy(update=resolved)
    return settings.model_copy(update=sections)


def _absolute(value: str, base: Path) -> str:
    if not value or _URI.match(value):
        return value
    return os.path.abspath(base / value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LakehouseError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise LakehouseError(f"config file {path} is a folder: name a YAML file, e.g. {DEFAULT_CONF}") from None
    except NotADirectoryError:
        raise LakehouseError(f"config file not found: {path} (a part of its path is a file, not a folder)") from None
    except OSError as exc:
        raise LakehouseError(f"config file {path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LakehouseError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise LakehouseError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise LakehouseError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def _apply_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Writes every LAKEHOUSE__SECTION__KEY into `raw`; returns which variable set which key, for error messages."""
    sources = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise LakehouseError(f"{name}: expected the form LAKEHOUSE__SECTION__KEY")
        section, key = parts
        try:
            # A secret is taken as it is: YAML would make a key of digits a number, "yes" a bool.
            value = yaml.safe_load(text) if text.strip() and not _is_secret(section, key) else text
        except yaml.YAMLError:
            value = text
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise LakehouseError(f"{name}: section {section!r} is not a mapping")
        target[key] = value
        sources[(section, key)] = sources[(section,)] = name
    return sources


def _is_secret(section: str, key: str) -> bool:
    field = Settings.model_fields.get(section)
    fields = getattr(field.annotation, "model_fields", {}) if field else {}
    return key in fields and fields[key].annotation is SecretStr


def _one_line(path: str | Path, exc: ValidationError, sources: dict[tuple[str, ...], str]) -> str:
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"]]
    where = ".".join(location)
    origin = sources.get(tuple(location[:2])) or sources.get(tuple(location[:1]))
    message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    suffix = f" (from {origin})" if origin else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {where}: {message}{suffix}{more}"
