#!/usr/bin/env bash
# Builds the Kubernetes control-plane and node binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl; kube-proxy on request), etcd and helm with the machine's Go, from the Go module proxy.
# Binaries land in $KLP_CACHE/k8s-<version>/ (outside the repo) and are reused when present.
# Usage: scripts/toolchain/build-k8s.sh [component...]   (default: all but kube-proxy, which only
# the real-node suite needs: scripts/node/ensure-tools.sh asks for it)
# Prints the binary directory on stdout; progress (with timings) on stderr.
# Concurrent runs are serialized with a lock in the cache (a second run waits, then reuses).
# While a binary builds, a line every 30 s says how long so far against its cold estimate.
# Writes are atomic (a temp name, then rename): an interrupted build leaves no half-written binary,
# and a rerun resumes from the Go build cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cold-times.sh
. "$here/cold-times.sh"

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
HELM_VERSION=v3.22.0
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
OUT=$CACHE/k8s-$K8S_VERSION
WORK=$CACHE/build/k8s-$K8S_VERSION
mkdir -p "$OUT" "$WORK"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet helm)

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# One build at a time per cache (2 cores: two concurrent Go builds only slow each other down).
exec 9>"$CACHE/.build-k8s.lock"
if ! flock -n 9; then
  log "another build-k8s.sh holds $CACHE/.build-k8s.lock; waiting for it"
  flock 9
fi

# Runs a command with its output in $WORK/<name>.log; on failure prints the log's tail.
quiet() {
  local name=$1; shift
  if ! "$@" >"$WORK/$name.log" 2>&1; then
    log "FAILED: $* (tail of $WORK/$name.log follows)"
    tail -n 40 "$WORK/$name.log" >&2
    return 1
  fi
}

build_etcd() {
  local dir=$WORK/etcd
  mkdir -p "$dir"
  cat > "$dir/main.go" <<'GO'
// Command etcd wraps etcdmain so the test control plane can build etcd from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cd "$dir"
  [ -f go.mod ] || quiet etcd-init go mod init klp.local/etcd
  quiet etcd-get go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  quiet etcd-tidy go mod tidy
  quiet etcd-build go build -trimpath -ldflags='-s -w' -o "$OUT/etcd.tmp" .
  mv "$OUT/etcd.tmp" "$OUT/etcd"
}

# The commands the wrapper module pins (tools.go). A wrapper prepared before a command was added
# here is tidied again (go.sum then also covers that command's dependencies).
write_tools_go() {
  cat > "$1" <<'GO'
//go:build tools

// Package tools pins the Kubernetes commands this wrapper builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
}

k8s_wrapper() {
  local dir=$WORK/kubernetes
  if [ -f "$dir/.ready" ]; then
    write_tools_go "$dir/tools.go.new"
    if cmp -s "$dir/tools.go.new" "$dir/tools.go"; then rm -f "$dir/tools.go.new"; return 0; fi
    log "wrapper module: new commands in tools.go, tidying again"
    mv "$dir/tools.go.new" "$dir/tools.go"
    (cd "$dir" && quiet k8s-tidy go mod tidy)
    return 0
  fi
  mkdir -p "$dir"
  local start=$SECONDS
  log "preparing wrapper module for k8s.io/kubernetes $K8S_VERSION"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$gomod" ] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; return 1; }
  {
    echo "module klp.local/k8s"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # Each staging module kubernetes replaces with ./staging/src/k8s.io/X is published as vX: point there.
    grep -E '=> \./staging/src/k8s.io/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > "$dir/go.mod"
  write_tools_go "$dir/tools.go"
  (cd "$dir" && quiet k8s-tidy go mod tidy)
  touch "$dir/.ready"
  log "wrapper module ready in $((SECONDS - start))s"
}

build_k8s() {
  local name=$1
  if [ -n "$prep" ]; then wait "$prep" || return 1; prep=; fi
  k8s_wrapper
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$WORK/kubernetes" && quiet "build-$name" go build -trimpath -ldflags="$ld" -o "$OUT/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$OUT/$name.tmp" "$OUT/$name"
}

build_helm() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  # Without these -X flags `helm version` says v3.22 and `helm template` assumes Kubernetes v1.20.
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  local gobin=$WORK/helm-bin
  rm -rf "$gobin"; mkdir -p "$gobin"
  GOBIN=$gobin quiet build-helm go install -trimpath -ldflags="$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$OUT/helm"
}

# One progress line every 30 s ($KLP_BUILD_HEARTBEAT_S) while $1 builds: a cold build is silent for
# minutes otherwise. Stops by itself if this script is gone; its sleep holds no copy of stderr, so
# a reader waiting for stderr to close is not kept waiting once it is killed.
heartbeat() {
  local name=$1 est start now
  est=$(cold_build_seconds "$name")
  start=$(date +%s)
  while sleep "${KLP_BUILD_HEARTBEAT_S:-30}" >/dev/null 2>&1 && kill -0 $$ 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    if [ -z "$est" ]; then log "$name: $(fmt_duration "$now") so far"
    elif [ "$now" -le "$est" ]; then log "$name: $(fmt_duration "$now") so far of ~$(fmt_duration "$est") estimated (cold)"
    else log "$name: $(fmt_duration "$now") so far, past the ~$(fmt_duration "$est") cold estimate (a loaded machine builds slower)"
    fi
  done
}
beat=
prep=
trap 'for p in $beat $prep; do kill "$p" 2>/dev/null || true; done' EXIT

# Preparing the Kubernetes wrapper module is mostly downloading (network, not CPU): when etcd is
# built first, do it in the background meanwhile.
needs_k8s_wrapper() {
  local c
  [ -f "$WORK/kubernetes/.ready" ] && return 1
  for c in "${components[@]}"; do
    case $c in kube-*|kubectl|kubelet) [ -x "$OUT/$c" ] || return 0 ;; esac
  done
  return 1
}
if [ "${components[0]}" = etcd ] && [ ! -x "$OUT/etcd" ] && needs_k8s_wrapper; then
  k8s_wrapper &
  prep=$!
fi

for c in "${components[@]}"; do
  [ -x "$OUT/$c" ] && continue
  start=$SECONDS
  est=$(cold_build_seconds "$c")
  log "building $c${est:+ (~$(fmt_duration "$est") with cold Go caches on 2 cores)}"
  heartbeat "$c" &
  beat=$!
  case $c in
    etcd) (build_etcd) ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet|kube-proxy) build_k8s "$c" ;;
    helm) build_helm ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
  kill "$beat" 2>/dev/null || true
  beat=
  log "$c ready in $((SECONDS - start))s: $OUT/$c"
done
echo "$OUT"
