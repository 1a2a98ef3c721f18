#!/usr/bin/env bash
# Build (or find) the cached MinIO server that tests/evidence/test_anchor_s3.py anchors into:
# a real S3-compatible object store with Object Lock, built from the Go module proxy
# (`go install github.com/minio/minio@<pinned pseudo-version>`; MinIO is not packaged by Debian).
#
# The binary goes to a cache directory OUTSIDE the repository, keyed by the pinned version and
# this recipe: ${SOC2INFRA_CACHE:-$HOME/.cache/soc2infra}/bin/minio-<key>/minio
# A second run is instant. A cold build takes several minutes on 2 cores (measured: see README).
# MinIO is AGPL-3.0: it is only built and run here as a test peer, never linked or shipped.
#
# Usage: tools/build-minio.sh [--check]   prints the binary's path as the LAST line of stdout;
#   --check builds nothing and exits 3 when the binary is missing. Progress goes to stderr.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
RECIPE_REV=1
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
log() { echo "build-minio: $*" >&2; }

key="$(echo "rev=$RECIPE_REV minio=$MINIO_VERSION goos=$(uname -s) goarch=$(uname -m)" | sha256sum | cut -c1-16)"
cache="${SOC2INFRA_CACHE:-$HOME/.cache/soc2infra}"
bindir="$cache/bin/minio-$key"
bin="$bindir/minio"

if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
if [ "${1:-}" = --check ]; then log "minio missing ($bin; run $0 to build it)"; echo "$bin"; exit 3; fi
[ -x "$GO" ] || { log "go not found (set GO=/path/to/go or put go on PATH)"; exit 1; }
mkdir -p "$bindir"

# One builder at a time: a second caller waits for the first instead of compiling twice.
exec 9>"$bindir/.lock"
if command -v flock >/dev/null && ! flock -n 9; then
  log "another build of minio is running; waiting for it"
  flock 9
fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

work="$(mktemp -d "${TMPDIR:-/tmp}/soc2infra-minio.XXXXXX")"
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)
log "building minio $MINIO_VERSION (several minutes cold) ..."
# GOTOOLCHAIN=local: never download a toolchain; the module's go line (1.24) is below ours.
# Build into a scratch GOBIN, then rename into place: a killed build leaves no half binary.
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$work" GOFLAGS="-trimpath" \
  "$GO" install -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION" >&2
mv "$work/minio" "$bin.tmp.$$" && mv "$bin.tmp.$$" "$bin"
log "built minio in $(( $(date +%s) - t0 )) s"
echo "$bin"
