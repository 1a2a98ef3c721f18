#!/usr/bin/env bash
# Build the real control-plane binaries used by `soc2infra lab` and tests/e2e:
#   kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3),
#   kubectl (k8s.io/kubernetes, the apiserver's version: the distribution's kubectl is outside the skew)
#
# Binaries go to a cache directory OUTSIDE the repository:
#   ${SOC2INFRA_CACHE:-$HOME/.cache/soc2infra}/bin/<key>/
# where <key> hashes tools/k8sbin/go.mod + go.sum and the build recipe below, so a second run
# is instant and a change to any pinned version lands in a fresh directory.
#
# Usage: tools/build-binaries.sh [--check | --helm-only] [--with-kcm]
#   (no flag)    build whatever is missing; print the bin dir as the LAST line of stdout
#   --check      build nothing; print the bin dir and exit 0 if complete, exit 3 if not
#   --helm-only  build only helm (minutes cold) into the same bin dir; print it
#   --with-kcm   also kube-controller-manager: its ValidatingAdmissionPolicy status controller
#                writes status.typeChecking, which tests/e2e/test_vap_parity.py reads
# Progress and go output go to stderr. Needs Go >= 1.24 (GOTOOLCHAIN=local: never auto-download
# a toolchain) and network access to the Go module proxy on a cold run (~6 min on 2 cores).
set -euo pipefail

K8S_VERSION=v1.34.3
HELM_VERSION=v3.21.4
# Bump when the recipe (flags, layout) changes so old caches are not reused.
RECIPE_REV=1

# This script sits next to the Go wrapper module; both ship in the wheel as soc2infra/k8sbin/ so
# `soc2infra lab up` can build from an installed package (tools/build-binaries.sh runs this copy).
moddir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

mode=build
with_kcm=0
for arg in "$@"; do
  case "$arg" in
    --check) mode=check ;;
    --helm-only) mode=helm ;;
    --with-kcm) with_kcm=1 ;;
    *) echo "usage: $0 [--check | --helm-only] [--with-kcm]" >&2; exit 2 ;;
  esac
done

log() { echo "build-binaries: $*" >&2; }

# etcd's version comes from the wrapper module so it cannot drift from go.sum.
ETCD_VERSION="$(sed -n 's#^[[:space:]]*go\.etcd\.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$moddir/go.mod" | head -n1)"
[ -n "$ETCD_VERSION" ] || { log "cannot find go.etcd.io/etcd/server/v3 in $moddir/go.mod"; exit 1; }

K8S_MAJOR="$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
K8S_MINOR="$(echo "${K8S_VERSION#v}" | cut -d. -f2)"
APISERVER_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=$K8S_MAJOR -X k8s.io/component-base/version.gitMinor=$K8S_MINOR \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
ETCD_LDFLAGS="-s -w"

recipe="rev=$RECIPE_REV k8s=$K8S_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION
apiserver=$APISERVER_LDFLAGS etcd_ldflags=$ETCD_LDFLAGS goos=$(uname -s) goarch=$(uname -m)"
key="$( { cat "$moddir/go.mod" "$moddir/go.sum"; echo "$recipe"; } | sha256sum | cut -c1-16)"
cache="${SOC2INFRA_CACHE:-$HOME/.cache/soc2infra}"
bindir="$cache/bin/$key"
# kubectl was added after the first three; it has its own module files (kubectl.go.mod/.sum: the same
# pins plus kubectl's dependencies) and its own stamp, so adding it did not change <key> and did not
# force everyone to rebuild the apiserver. A stale stamp rebuilds kubectl alone.
kubectl_key="$( { cat "$moddir/kubectl.go.mod" "$moddir/kubectl.go.sum"; echo "kubectl $recipe"; } \
  | sha256sum | cut -c1-16)"

# kube-controller-manager, on request only, the same way: kcm.go.mod/.sum and its own stamp.
kcm_key="$( { cat "$moddir/kcm.go.mod" "$moddir/kcm.go.sum"; echo "kcm $recipe"; } | sha256sum | cut -c1-16)"

complete() {
  local b wanted="kube-apiserver etcd helm"
  [ "$mode" = helm ] && wanted=helm
  for b in $wanted; do [ -x "$bindir/$b" ] || return 1; done
  if [ "$mode" != helm ] && [ "$with_kcm" = 1 ]; then kcm_current || return 1; fi
  [ "$mode" = helm ] || kubectl_current
}

kcm_current() {
  [ -x "$bindir/kube-controller-manager" ] && [ "$(cat "$bindir/kcm.key" 2>/dev/null)" = "$kcm_key" ]
}

kubectl_current() {
  [ -x "$bindir/kubectl" ] && [ "$(cat "$bindir/kubectl.key" 2>/dev/null)" = "$kubectl_key" ]
}

if complete; then echo "$bindir"; exit 0; fi
if [ "$mode" = check ]; then
  log "binaries missing in $bindir (run $0 to build them)"
  echo "$bindir"
  exit 3
fi

[ -x "$GO" ] || { log "go not found (set GO=/path/to/go or put go on PATH)"; exit 1; }
mkdir -p "$bindir"

# One builder per key at a time: a second caller (another pytest session, `lab up`) waits for the
# first instead of compiling the same 100 MB binary twice on 2 cores.
# helm alone takes its own lock so a demo does not wait behind a full apiserver build.
lockname=".lock-$key"; [ "$mode" = helm ] && lockname=".lock-$key-helm"
exec 9>"$cache/bin/$lockname"
if command -v flock >/dev/null && ! flock -n 9; then
  log "another build of $key is running; waiting for it"
  flock 9
fi
if complete; then echo "$bindir"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0
work="$(mktemp -d "${TMPDIR:-/tmp}/soc2infra-k8sbin.XXXXXX")"
trap 'rm -rf "$work"; rm -f "$bindir"/.tmp.*."$$"' EXIT
# Build from a scratch copy of the wrapper module: -mod=mod may rewrite go.mod/go.sum and the
# repository checkout must never change (it may also be read-only).
cp "$moddir/go.mod" "$moddir/go.sum" "$work/"

# Build to a temp name in the destination dir, then rename: rename(2) within one directory is
# atomic, so a killed build never leaves a half-written binary under the final name.
build_mod() { # name pkg ldflags
  local name=$1 pkg=$2 ldflags=$3 t0
  [ -x "$bindir/$name" ] && return 0
  t0=$(date +%s)
  log "building $name ($pkg) ..."
  (cd "$work" && GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "$ldflags" -o "$bindir/.tmp.$name.$$" "$pkg")
  mv -f "$bindir/.tmp.$name.$$" "$bindir/$name"
  log "built $name in $(( $(date +%s) - t0 )) s"
}

build_kubectl() {
  local t0 kwork="$work/kubectl"
  kubectl_current && return 0
  t0=$(date +%s)
  log "building kubectl $K8S_VERSION ..."
  mkdir -p "$kwork"
  cp "$moddir/kubectl.go.mod" "$kwork/go.mod"
  cp "$moddir/kubectl.go.sum" "$kwork/go.sum"
  (cd "$kwork" && GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "$APISERVER_LDFLAGS" \
    -o "$bindir/.tmp.kubectl.$$" k8s.io/kubernetes/cmd/kubectl)
  mv -f "$bindir/.tmp.kubectl.$$" "$bindir/kubectl"
  echo "$kubectl_key" >"$bindir/kubectl.key"
  log "built kubectl in $(( $(date +%s) - t0 )) s"
}

build_kcm() {
  local t0 kwork="$work/kcm"
  kcm_current && return 0
  t0=$(date +%s)
  log "building kube-controller-manager $K8S_VERSION ..."
  mkdir -p "$kwork"
  cp "$moddir/kcm.go.mod" "$kwork/go.mod"
  cp "$moddir/kcm.go.sum" "$kwork/go.sum"
  (cd "$kwork" && GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "$APISERVER_LDFLAGS" \
    -o "$bindir/.tmp.kube-controller-manager.$$" k8s.io/kubernetes/cmd/kube-controller-manager)
  mv -f "$bindir/.tmp.kube-controller-manager.$$" "$bindir/kube-controller-manager"
  echo "$kcm_key" >"$bindir/kcm.key"
  log "built kube-controller-manager in $(( $(date +%s) - t0 )) s"
}

build_helm() {
  local t0 gomod cgo_ver hmaj hmin ldflags gobin
  [ -x "$bindir/helm" ] && return 0
  t0=$(date +%s)
  log "building helm $HELM_VERSION ..."
  # Same version stamping as helm's own Makefile for a release build: the default
  # .Capabilities.KubeVersion follows helm's client-go (major+1, minor). Callers still pass
  # --kube-version explicitly.
  gomod="$(cd "$work" && GOFLAGS= "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  cgo_ver="$(sed -n 's#^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -n1)"
  hmaj=1; hmin="${cgo_ver:-$K8S_MINOR}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
 -X helm.sh/helm/v3/internal/version.metadata= \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$hmaj -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$hmin \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$hmaj -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$hmin"
  gobin="$work/helm-bin"
  # `go install pkg@version` ignores the current module and refuses -mod flags: clear GOFLAGS.
  (cd "$work" && GOFLAGS= GOBIN="$gobin" "$GO" install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  cp "$gobin/helm" "$bindir/.tmp.helm.$$"
  mv -f "$bindir/.tmp.helm.$$" "$bindir/helm"
  log "built helm in $(( $(date +%s) - t0 )) s"
}

log "go: $("$GO" version); cache: $bindir"
if [ "$mode" = helm ]; then
  build_helm
  complete || { log "build finished but helm is missing in $bindir"; exit 1; }
  echo "$bindir"
  exit 0
fi
build_mod etcd go.etcd.io/etcd/server/v3 "$ETCD_LDFLAGS"
build_mod kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$APISERVER_LDFLAGS"
build_helm
build_kubectl
if [ "$with_kcm" = 1 ]; then build_kcm; fi
cat >"$bindir/VERSIONS" <<EOF
kube-apiserver $K8S_VERSION
kubectl $K8S_VERSION
etcd $ETCD_VERSION
helm $HELM_VERSION
key $key
EOF
complete || { log "build finished but binaries are missing in $bindir"; exit 1; }
echo "$bindir"
