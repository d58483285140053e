#!/usr/bin/env bash
# Everything a real node (test/support/real-node.ts) needs on this machine, installed or built when
# missing, and reused when present:
#   - Debian's containerd, runc, containernetworking-plugins (bridge, host-local, loopback), iptables,
#     iproute2, conntrack (apt-get, as root);
#   - kubelet and kube-proxy v1.37.2 beside the other Kubernetes binaries (scripts/toolchain/
#     ensure-binaries.sh, asked for what the node and its control plane run);
#   - the pause image: kubernetes' build/pause/linux/pause.c (from the k8s.io/kubernetes module the
#     toolchain already downloaded) built with `gcc -static`, packed as a docker-archive tarball for
#     `ctr images import` (no registry is ever asked for it).
# Prints KEY=VALUE lines on stdout (BIN_DIR, CNI_BIN_DIR, CONTAINERD, CTR, RUNC, PAUSE_IMAGE,
# PAUSE_TAR); progress on stderr.
# Env: KLP_CACHE (default ~/.cache/kpatch-operator); KLP_NO_INSTALL=1 fails instead of installing.
# Usage: scripts/node/ensure-tools.sh [--check]   (--check: exit 0 when everything is there, 3 if not,
# installing and building nothing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$here/../.." && pwd)
K8S_VERSION=v1.37.2
PAUSE_VERSION=3.10.2
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
NODE_CACHE=$CACHE/node
PAUSE_IMAGE=localhost/kpatch-pause:$PAUSE_VERSION
PAUSE_TAR=$NODE_CACHE/pause-$PAUSE_VERSION.tar
check_only=""
[ "${1:-}" = "--check" ] && check_only=1

log() { printf '[node-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Debian packages -------------------------------------------------------------------------
# command -> package that provides it
declare -A PKG_OF=(
  [containerd]=containerd
  [containerd-shim-runc-v2]=containerd
  [ctr]=containerd
  [runc]=runc
  [iptables]=iptables
  [ip]=iproute2
  [nsenter]=util-linux
  [conntrack]=conntrack
  [gcc]=gcc
)
CNI_BIN_DIR=/usr/lib/cni
CNI_PLUGINS=(bridge host-local loopback)

missing_pkgs=()
for cmd in "${!PKG_OF[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=("${PKG_OF[$cmd]}")
done
for p in "${CNI_PLUGINS[@]}"; do
  [ -x "$CNI_BIN_DIR/$p" ] || { missing_pkgs+=(containernetworking-plugins); break; }
done
# libc6-dev provides the static libc that `gcc -static` links.
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing_pkgs+=(libc6-dev)

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
  [ -z "$check_only" ] || { log "missing packages: ${missing_pkgs[*]}"; exit 3; }
  [ -z "${KLP_NO_INSTALL:-}" ] || die "missing packages: ${missing_pkgs[*]} (KLP_NO_INSTALL is set)"
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing_pkgs[*]}; installing them needs root"
  log "apt-get install ${missing_pkgs[*]}"
  install_missing() {
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >&2
  }
  # Serialized with other scripts of the project that use apt (dpkg has its own lock, but a second
  # apt-get would fail on it instead of waiting).
  . "$(dirname "${BASH_SOURCE[0]}")/../toolchain/apt-locked.sh"
  apt_locked install_missing
fi

# --- Kubernetes binaries ---------------------------------------------------------------------
if [ -n "$check_only" ]; then
  BIN_DIR=$CACHE/k8s-$K8S_VERSION
  for b in kubelet kube-proxy kubectl helm; do [ -x "$BIN_DIR/$b" ] || { log "missing $BIN_DIR/$b"; exit 3; }; done
else
  # The control plane with its controllers, the node's kubelet and kube-proxy, helm for the chart.
  BIN_DIR=$("$REPO_ROOT/scripts/toolchain/ensure-binaries.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy helm)
fi

# --- the pause image -------------------------------------------------------------------------
if [ ! -s "$PAUSE_TAR" ]; then
  [ -z "$check_only" ] || { log "missing $PAUSE_TAR"; exit 3; }
  K8S_VERSION=$K8S_VERSION PAUSE_VERSION=$PAUSE_VERSION "$REPO_ROOT/scripts/toolchain/build-pause.sh" "$PAUSE_IMAGE" "$PAUSE_TAR"
fi

cat <<EOF
BIN_DIR=$BIN_DIR
CNI_BIN_DIR=$CNI_BIN_DIR
CONTAINERD=$(command -v containerd)
CTR=$(command -v ctr)
RUNC=$(command -v runc)
PAUSE_IMAGE=$PAUSE_IMAGE
PAUSE_TAR=$PAUSE_TAR
EOF
