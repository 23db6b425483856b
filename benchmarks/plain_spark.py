"""The plain Spark job the ingest benchmark measures `lakehouse ingest` against (issue 24's reference): what a team
would write in an afternoon to land the same files in the same layout — `spark.read` with a fixed schema, the
`events` columns, a Delta append partitioned by type, date and hour. No contract, no dedup, no quarantine, no
exactly-once, no checks. Built with our own session builder: the same Spark settings, Delta jars and file system as
`lakehouse ingest`, so that only the work differs.
Usage: .venv/bin/python benchmarks/plain_spark.py INPUT_DIR TARGET_TABLE (the lake's settings from the LAKEHOUSE__
environment, as `lakehouse` reads them); prints {"rows": N, "seconds": S} (S: from the read to the commit, the
session up)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from lakehouse.config import load_settings
from lakehouse.session import spark_session

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "data STRUCT<id: STRING, type: STRING, attributes: STRING>, meta STRING"


def main() -> int:
    input_dir, target = sys.argv[1:3]
    spark = spark_session(load_settings(REPO / "conf" / "local.yaml", dict(os.environ)))
    started = time.perf_counter()
    # A nested object read as a STRING column keeps its JSON text; lines that do not parse are dropped.
    reader = spark.read.schema(SCHEMA).option("mode", "DROPMALFORMED").option("recursiveFileLookup", "true")
    lines = reader.option("pathGlobFilter", "*.jsonl").json(input_dir)
    meta = F.col("meta")
    attributes = F.col("data.attributes")
    event_ts = F.timestamp_millis(F.get_json_object(meta, "$.created_at").try_cast("long"))
    events = lines.select(
        F.col("data.id").alias("event_id"),
        F.col("data.type").alias("event_type"),
        event_ts.alias("event_ts"),
        F.to_date(event_ts).alias("event_date"),
        F.hour(event_ts).alias("event_hour"),
        F.coalesce(F.get_json_object(attributes, "$.user_id"), F.get_json_object(meta, "$.user_id")).alias("user_id"),
        F.coalesce(F.get_json_object(attributes, "$.country"), F.get_json_object(meta, "$.country")).alias("country"),
        F.get_json_object(meta, "$.service").alias("service"),
        attributes.alias("attributes"),
        meta.alias("meta"),
        F.input_file_name().alias("source_file"),
    )
    events.write.format("delta").mode("append").partitionBy("event_type", "event_date", "event_hour").save(target)
    seconds = time.perf_counter() - started
    history = spark.sql(f"DESCRIBE HISTORY delta.`{target}` LIMIT 1").first()
    print(json.dumps({"rows": int(history["operationMetrics"]["numOutputRows"]), "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
