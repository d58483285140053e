#!/usr/bin/env bash
# Builds the Kubernetes control-plane and node binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl) and etcd with the machine's Go, from the Go module proxy.
# Binaries land in $KLP_CACHE/k8s-<version>/ (outside the repo) and are reused when present.
# Usage: scripts/toolchain/build-k8s.sh [component...]   (default: all)
set -euo pipefail

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
OUT=$CACHE/k8s-$K8S_VERSION
WORK=$CACHE/build/k8s-$K8S_VERSION
mkdir -p "$OUT" "$WORK"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

log() { printf '[build-k8s] %s\n' "$*" >&2; }

build_etcd() {
  [ -x "$OUT/etcd" ] && return 0
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
  (cd "$dir" && { [ -f go.mod ] || go mod init klp.local/etcd >/dev/null 2>&1; } \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 \
    && go build -trimpath -ldflags='-s -w' -o "$OUT/etcd.tmp" . && mv "$OUT/etcd.tmp" "$OUT/etcd")
}

k8s_wrapper() {
  local dir=$WORK/kubernetes
  [ -f "$dir/.ready" ] && return 0
  mkdir -p "$dir"
  log "preparing wrapper module for k8s.io/kubernetes $K8S_VERSION"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
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
  cat > "$dir/tools.go" <<'GO'
//go:build tools

// Package tools pins the Kubernetes commands this wrapper builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || (cd "$dir" && go mod tidy))
  touch "$dir/.ready"
}

build_k8s() {
  local name=$1
  [ -x "$OUT/$name" ] && return 0
  k8s_wrapper
  log "building $name (a cold build of the API server and controller manager takes ~15 min on 2 cores)"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$WORK/kubernetes" && go build -trimpath -ldflags="$ld" -o "$OUT/$name.tmp" "k8s.io/kubernetes/cmd/$name" && mv "$OUT/$name.tmp" "$OUT/$name")
}

for c in "${components[@]}"; do
  start=$(date +%s)
  case $c in
    etcd) build_etcd ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl) build_k8s "$c" ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
  log "$c ready in $(( $(date +%s) - start ))s: $OUT/$c"
done
echo "$OUT"
