#!/usr/bin/env bash
# README command 1: install soc2infra into .venv, scan the bundled examples and explain the result.
# Always exits 0 when the demo ran (findings are the point of the demo); 2 when it could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
t_start=$(date +%s)
since() { echo "$(( $(date +%s) - $1 )) s"; }

echo "== 1/3 installing soc2infra into .venv"
t0=$(date +%s)
pip_log=$(mktemp "${TMPDIR:-/tmp}/soc2infra-demo-pip.XXXXXX")
# pip's build chatter only matters when the install fails: show it then.
if ! { python3 -m venv .venv && .venv/bin/python -m pip install --quiet --upgrade pip \
       && .venv/bin/python -m pip install --quiet -e .; } >"$pip_log" 2>&1; then
  cat "$pip_log" >&2
  echo "installing soc2infra failed (see above)" >&2
  exit 2
fi
rm -f "$pip_log"
echo "   done ($(since "$t0"))"

echo "== 2/3 finding helm (renders the example chart)"
t0=$(date +%s)
if ! helm=$(.venv/bin/python -m soc2infra.binaries find helm 2>/dev/null); then
  echo "   helm is not installed: building it from the Go module proxy, once (several minutes on"
  echo "   2 cores with an empty Go cache; cached in ~/.cache/soc2infra, later runs skip this)."
  bin_dir=$(bash tools/build-binaries.sh --helm-only | tail -n 1)
  helm="$bin_dir/helm"
  echo "   built $helm ($(since "$t0"))"
else
  echo "   $helm"
fi
export SOC2INFRA_HELM="$helm"

echo "== 3/3 soc2infra scan examples/"
report=$(mktemp "${TMPDIR:-/tmp}/soc2infra-demo.XXXXXX.json")
trap 'rm -f "$report"' EXIT
code=0
.venv/bin/soc2infra scan examples/ --format json --output-file "$report" "$@" || code=$?
if [ "$code" -ge 2 ] || [ ! -s "$report" ]; then
  echo "The scan ended with exit code $code (2: bad input or configuration, 3: a bug); see above." >&2
  exit 2
fi
.venv/bin/python - "$report" "$code" "$(since "$t_start")" <<'EOF'
"""A short, friendly summary of the demo scan (reads the JSON report)."""
import json
import sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
code, took = int(sys.argv[2]), sys.argv[3]
summary = report["summary"]
findings = [f for f in report["findings"] if not f.get("suppressed")]
print()
print("== Summary")
files = {f["resource"]["file"] for f in findings}
print(f"Scanned examples/ (Terraform modules, plain Kubernetes YAML, a Kustomize overlay, a Helm chart)"
      f" in {took}: {summary['resources']} resources; findings in {len(files)} files.")
print(f"{summary['open']} open findings ({', '.join(f'{n} {s}' for s, n in summary['by_severity'].items() if n)}),"
      f" {summary['suppressed']} waived, {summary['errors']} errors.")
by_control = sorted(summary["by_control"].items(), key=lambda kv: (-kv[1], kv[0]))
print("Findings by SOC 2 criterion (a finding can support several):")
for start in range(0, len(by_control), 8):
    print("  " + "  ".join(f"{control} {n}" for control, n in by_control[start:start + 8]))
meaning = {0: "nothing at or above the threshold: a CI gate would pass",
           1: "findings at or above the threshold: a CI gate would fail"}
print(f"Exit code {code}: {meaning.get(code, 'see the README')} (0 clean, 1 findings, 2 errors, 3 bug).")
print("Try next:")
print("  .venv/bin/soc2infra scan examples/ --severity-threshold high      # gate only on high and critical")
print("  .venv/bin/soc2infra scan examples/terraform --format markdown     # a PR comment by criterion")
print("  .venv/bin/soc2infra policy list                                    # every rule and its criteria")
print("  .venv/bin/soc2infra lab up                                         # the admission webhook on a real apiserver")
EOF
exit 0
