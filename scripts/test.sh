#!/usr/bin/env bash
# README command 2: install everything the test suite needs and run all of it.
#   Python deps into .venv; kube-apiserver, etcd and helm built from the Go module proxy
#   (cached outside the repo, keyed by go.sum); PostgreSQL and Chromium from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== python environment"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

echo "== checkov lens environment (soc2infra[checkov] in its own venv: checkov pins shared deps)"
python3 -m venv .venv-checkov
.venv-checkov/bin/python -m pip install --quiet --upgrade pip
.venv-checkov/bin/python -m pip install --quiet -e '.[checkov]'
export SOC2INFRA_CHECKOV_ENV="$PWD/.venv-checkov"

echo "== system packages (PostgreSQL, Chromium)"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

echo "== kube-apiserver, etcd, helm, kubectl, kube-controller-manager (cached build)"
start=$(date +%s)
bin_dir=$(bash tools/build-binaries.sh --with-kcm | tail -n 1)
export SOC2INFRA_BIN_DIR="$bin_dir" SOC2INFRA_HELM="$bin_dir/helm" PATH="$bin_dir:$PATH"
echo "   binaries in $bin_dir ($(( $(date +%s) - start )) s)"

echo "== minio (the S3 Object Lock peer of the anchor tests; cached build, ~5-12 min cold on 2 cores)"
start=$(date +%s)
SOC2INFRA_MINIO="$(bash tools/build-minio.sh | tail -n 1)"
export SOC2INFRA_MINIO
echo "   $SOC2INFRA_MINIO ($(( $(date +%s) - start )) s)"

echo "== lint"
ruff check .
lint-imports

echo "== types (mypy --strict, configured in pyproject.toml)"
mypy

echo "== policy pack examples"
soc2infra policy test

echo "== tests"
# Screenshots and other files a test keeps for people (the period report in Chromium …).
export SOC2INFRA_ARTIFACTS="${SOC2INFRA_ARTIFACTS:-$PWD/test-artifacts}"
python -m pytest -p no:cacheprovider "$@"
