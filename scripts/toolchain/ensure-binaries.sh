#!/usr/bin/env bash
# Usage: ensure-binaries.sh BINARY...
#   BINARY: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy helm.
#   Ask for the ones you run: a cold build takes minutes per binary (npm start needs only etcd,
#   kube-apiserver and kubectl).
# Prints the directory holding them.
# - KUBEBUILDER_ASSETS (envtest convention): each asked binary present there is used as is. All of
#   them there: that directory is printed. Some: the others come from the cache, and a directory of
#   symlinks to both is printed ($KLP_CACHE/with-assets/<hash>/).
# - The rest: built when missing into the cache with build-k8s.sh ($KLP_CACHE, default
#   ~/.cache/kpatch-operator, then k8s-<version>/), reused when present.
# - KLP_NO_BUILD=1: fail (exit 3) instead of building.
# Progress goes to stderr; stdout holds only the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cold-times.sh
. "$here/cold-times.sh"
K8S_VERSION=v1.37.2
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
OUT=$CACHE/k8s-$K8S_VERSION
KNOWN=" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy helm "
ASSETS=${KUBEBUILDER_ASSETS:-}

say() { echo "[ensure-binaries] $*" >&2; }

[ $# -gt 0 ] || { say "usage: ensure-binaries.sh BINARY... (of:$KNOWN)"; exit 2; }
for b in "$@"; do [[ $KNOWN == *" $b "* ]] || { say "unknown binary '$b' (known:$KNOWN)"; exit 2; }; done

from_assets=()
from_cache=()
for b in "$@"; do
  if [ -n "$ASSETS" ] && [ -x "$ASSETS/$b" ]; then from_assets+=("$b"); else from_cache+=("$b"); fi
done
if [ ${#from_cache[@]} -eq 0 ]; then
  echo "$ASSETS"
  exit 0
fi

missing() { local b; for b in "${from_cache[@]}"; do [ -x "$OUT/$b" ] || printf '%s ' "$b"; done; }

to_build=$(missing)
if [ -n "$to_build" ]; then
  if [ -n "${KLP_NO_BUILD:-}" ]; then
    say "missing in $OUT: ${to_build% } (KLP_NO_BUILD is set; run scripts/toolchain/build-k8s.sh ${to_build% })"
    exit 3
  fi
  total=0
  # shellcheck disable=SC2086
  for b in $to_build; do total=$((total + $(cold_build_seconds "$b" || true) + 0)); done
  say "building ${to_build% } from source: this run needs them and they are not in $OUT${ASSETS:+ nor in KUBEBUILDER_ASSETS}." \
    "Estimate ~$(fmt_duration "$total") with cold Go caches on 2 cores (measured, scripts/toolchain/README.md), later runs reuse them." \
    "To skip: KUBEBUILDER_ASSETS=<dir with prebuilt binaries>, or for npm start KUBECONFIG=<kubeconfig of an existing cluster>."
  # shellcheck disable=SC2086
  "$here/build-k8s.sh" $to_build >/dev/null
  still=$(missing)
  if [ -n "$still" ]; then
    say "still missing after the build: $still"
    exit 1
  fi
fi

if [ ${#from_assets[@]} -eq 0 ]; then
  echo "$OUT"
  exit 0
fi
# Some from KUBEBUILDER_ASSETS, some from the cache: one directory of symlinks, replaced atomically
# (rename) so that a concurrent run never sees a link missing.
mix=$CACHE/with-assets/$(printf '%s' "$ASSETS" | sha256sum | cut -c1-16)
mkdir -p "$mix"
for b in "${from_assets[@]}"; do ln -sfn "$ASSETS/$b" "$mix/.$b.$$" && mv -fT "$mix/.$b.$$" "$mix/$b"; done
for b in "${from_cache[@]}"; do ln -sfn "$OUT/$b" "$mix/.$b.$$" && mv -fT "$mix/.$b.$$" "$mix/$b"; done
say "from KUBEBUILDER_ASSETS: ${from_assets[*]}; from $OUT: ${from_cache[*]}"
echo "$mix"
