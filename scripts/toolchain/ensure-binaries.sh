#!/usr/bin/env bash
# Prints the directory holding the binaries the tests need: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet, helm.
#
# - KUBEBUILDER_ASSETS set and holding all of them: print it and build nothing (envtest convention).
# - Otherwise build what is missing into the cache with build-k8s.sh (reused when present) and print
#   the cache directory ($KLP_CACHE, default ~/.cache/kpatch-operator, then k8s-<version>/).
# - KLP_NO_BUILD=1: fail (exit 3) instead of building.
# Progress goes to stderr; stdout holds only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=v1.37.2
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
OUT=$CACHE/k8s-$K8S_VERSION
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet helm)

missing_in() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || printf '%s ' "$b"; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  missing=$(missing_in "$KUBEBUILDER_ASSETS")
  if [ -z "$missing" ]; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "[ensure-binaries] KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks: $missing; using $OUT instead" >&2
fi

missing=$(missing_in "$OUT")
if [ -n "$missing" ]; then
  if [ -n "${KLP_NO_BUILD:-}" ]; then
    echo "[ensure-binaries] missing in $OUT: $missing(KLP_NO_BUILD is set; run scripts/toolchain/build-k8s.sh)" >&2
    exit 3
  fi
  echo "[ensure-binaries] building: $missing(a cold build takes ~20 min on 2 cores; log lines follow)" >&2
  # shellcheck disable=SC2086
  "$here/build-k8s.sh" $missing >/dev/null
  missing=$(missing_in "$OUT")
  if [ -n "$missing" ]; then
    echo "[ensure-binaries] still missing after the build: $missing" >&2
    exit 1
  fi
fi
echo "$OUT"
