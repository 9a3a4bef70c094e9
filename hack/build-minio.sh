#!/usr/bin/env bash
# Builds MinIO (an independent implementation of STS AssumeRole that enforces session policies
# on its S3 API) from its Go module into bin/minio-<version>. Kept when already present.
set -euo pipefail
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/minio-$MINIO_VERSION
if [ ! -x "$out/minio" ]; then
  echo "[minio] building github.com/minio/minio@$MINIO_VERSION (about three minutes on a cold cache)" >&2
  mkdir -p "$out"
  CGO_ENABLED=0 GOBIN="$out" go install -trimpath -ldflags=-s "github.com/minio/minio@$MINIO_VERSION"
fi
echo "$out/minio"
