#!/bin/sh
# Creates the lake's bucket in MinIO and the services' own user (not root), allowed the bucket only (idempotent).
# The root credentials are used here only; all come from the environment (docker/.env). mc reads the root ones from
# MC_HOST_lake (set by the shell: in no process's arguments); they must be URL-safe (secrets.token_urlsafe).
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
export MC_HOST_lake="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"
mc mb --ignore-existing lake/lakehouse
cat > /tmp/lakehouse-rw.json <<'POLICY'
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::lakehouse"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                   "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::lakehouse/*"]}
  ]
}
POLICY
mc admin policy create lake lakehouse-rw /tmp/lakehouse-rw.json
# Adding an existing user sets its secret key anew (it follows docker/.env). mc takes the service user's keys as
# arguments: only for this short-lived process of this container, never the root ones.
mc admin user add lake "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# Attaching twice is an error: detach first (an error if it was not attached yet, which is fine).
mc admin policy detach lake lakehouse-rw --user "$S3_ACCESS_KEY" > /dev/null 2>&1 || true
mc admin policy attach lake lakehouse-rw --user "$S3_ACCESS_KEY"
