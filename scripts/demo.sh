#!/usr/bin/env bash
# README command 1: install soc2infra into .venv and scan the bundled examples.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
# Helm renders the example chart; build it once into the cache if it is not on PATH.
if ! command -v helm >/dev/null 2>&1; then
  bin_dir=$(bash tools/build-binaries.sh --helm-only | tail -n 1)
  export PATH="$bin_dir:$PATH"
fi
echo "== soc2infra scan examples/ =="
.venv/bin/soc2infra scan examples/ "$@" || code=$?
code=${code:-0}
echo "(exit code $code: 0 clean, 1 findings, 2 errors)"
exit 0
