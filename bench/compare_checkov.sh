#!/usr/bin/env bash
# Median wall time of checkov and soc2infra (cold and warm parse cache) on one Terraform tree,
# three interleaved runs. Needs `checkov` (pip install checkov, preferably in its own venv) and
# `soc2infra` on PATH, or CHECKOV=/path/to/checkov SOC2INFRA=/path/to/soc2infra.
#   bash bench/compare_checkov.sh path/to/terraform/tree
set -euo pipefail
dir=$1
checkov=${CHECKOV:-checkov}
soc2infra=${SOC2INFRA:-soc2infra}
now() { date +%s.%N; }
ck=(); cold=(); warm=()
for _ in 1 2 3; do
  s=$(now); "$checkov" -d "$dir" --framework terraform --quiet --compact -o json --skip-download >/dev/null 2>&1 || true
  ck+=("$(echo "$(now) - $s" | bc)")
  cache=$(mktemp -d)
  s=$(now); SOC2INFRA_CACHE=$cache "$soc2infra" scan "$dir" --format json --no-config >/dev/null 2>&1 || true
  cold+=("$(echo "$(now) - $s" | bc)")
  s=$(now); SOC2INFRA_CACHE=$cache "$soc2infra" scan "$dir" --format json --no-config >/dev/null 2>&1 || true
  warm+=("$(echo "$(now) - $s" | bc)")
  rm -rf "$cache"
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
echo "$dir: checkov $(median "${ck[@]}") s, soc2infra cold $(median "${cold[@]}") s, warm $(median "${warm[@]}") s (load $(cut -d' ' -f1 /proc/loadavg))"
