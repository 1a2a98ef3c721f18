#!/usr/bin/env bash
# Build (or find) the cached kube-apiserver, etcd, helm and kubectl; see tools/k8sbin/build-binaries.sh,
# which ships in the wheel as soc2infra/k8sbin/ and owns the recipe. Same arguments and output.
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8sbin/build-binaries.sh" "$@"
