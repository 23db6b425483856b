#!/bin/sh
# Creates the lake's bucket in MinIO (idempotent); the keys come from the environment (docker/.env).
set -eu
mc alias set lake http://minio:9000 "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
mc mb --ignore-existing lake/lakehouse
