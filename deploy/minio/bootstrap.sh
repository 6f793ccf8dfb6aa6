#!/bin/sh
# MinIO bootstrap (one-shot service `minio-init` in docker-compose.yml, image
# minio/mc): the artifact bucket, a bucket-scoped key for the pipeline, and the
# course's files in the course's layout, so that
#   IRISDAG_BATCH_SOURCE=s3://$BUCKET/data/iris.csv
#   IRISDAG_FEEDBACK_SOURCE=s3://$BUCKET/data/iris_y.csv
#   IRISDAG_CHAMPION_MODEL=s3://$BUCKET/artifact/model.json
# are readable. Idempotent: safe to run on every `docker-compose up`.
set -eu
: "${MINIO_URL:=http://minio:9000}"
: "${IRISDAG_S3_BUCKET:?}"
: "${MINIO_ROOT_USER:?}"
: "${MINIO_ROOT_PASSWORD:?}"
: "${IRISDAG_S3_ACCESS_KEY:?}"
: "${IRISDAG_S3_SECRET_KEY:?}"
COURSE_DIR=${COURSE_DIR:-/course}

tries=0
until mc alias set store "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "bootstrap: MinIO at $MINIO_URL did not answer" >&2; exit 1; }
  sleep 1
done

mc mb --ignore-existing "store/$IRISDAG_S3_BUCKET"

# The pipeline's key may read, write, list and delete in this bucket only.
cat > /tmp/irisdag-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
     "Resource": ["arn:aws:s3:::$IRISDAG_S3_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": ["arn:aws:s3:::$IRISDAG_S3_BUCKET/*"]}
  ]
}
POLICY
mc admin policy create store irisdag-pipeline /tmp/irisdag-policy.json
mc admin user add store "$IRISDAG_S3_ACCESS_KEY" "$IRISDAG_S3_SECRET_KEY"
mc admin policy attach store irisdag-pipeline --user "$IRISDAG_S3_ACCESS_KEY" 2>/dev/null || true

# The course's files (mounted read-only at $COURSE_DIR; the project does not commit them).
load() {
  if [ -f "$COURSE_DIR/$1" ]; then
    mc cp --quiet "$COURSE_DIR/$1" "store/$IRISDAG_S3_BUCKET/$2"
  else
    echo "bootstrap: $COURSE_DIR/$1 not found; s3://$IRISDAG_S3_BUCKET/$2 not loaded" >&2
  fi
}
load iris.csv data/iris.csv
load iris_y.csv data/iris_y.csv
load model.json artifact/model.json
mc ls --recursive "store/$IRISDAG_S3_BUCKET"
