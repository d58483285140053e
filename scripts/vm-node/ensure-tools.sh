#!/usr/bin/env bash
# Everything the VM node (test/support/vm-node.ts) needs, installed or built when missing and reused
# when present:
#   - QEMU, busybox-static, mkfs.ext4 and Debian's kernel image for the pinned release
#     (scripts/kernel/ensure-tools.sh, unchanged);
#   - socat on the host (QEMU's guestfwd runs one `socat - TCP:127.0.0.1:<API server port>` per
#     connection the guest opens to 10.0.0.1:443) and qemu-img (qemu-utils);
#   - Debian's containerd, runc, containernetworking-plugins and libseccomp2 for the GUEST: fetched
#     with `apt-get download` and unpacked (dpkg-deb -x) into $KLP_CACHE/vm-node/debs-<versions>/root,
#     never installed into the host system;
#   - Debian's docker-registry (the Distribution registry) for the HOST, fetched and unpacked the
#     same way into $KLP_CACHE/vm-node/registry-<version>: the registry the guest's kubelet pulls
#     module images from (test/support/registry.ts);
#   - kubelet v1.37.2 beside the other Kubernetes binaries (scripts/toolchain/ensure-binaries.sh);
#   - a pause image: kubernetes' build/pause/linux/pause.c (from the k8s.io/kubernetes module in the
#     Go module cache, downloaded from the Go module proxy when absent) built with `gcc -static`,
#     packed as a docker-archive tarball for `ctr images import` (no registry is ever asked for it).
# Prints KEY=VALUE lines on stdout (the kernel's KREL, KVERSION, KDIR, VMLINUZ, MODDIR, then
# GUEST_DEBS_ROOT, BIN_DIR, PAUSE_IMAGE, PAUSE_TAR, REGISTRY_BIN); progress on stderr.
# Env: KLP_CACHE (default ~/.cache/kpatch-operator).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
VM_CACHE=$CACHE/vm-node
K8S_VERSION=v1.37.2
PAUSE_VERSION=3.10.2
PAUSE_IMAGE=localhost/kpatch-vm-pause:$PAUSE_VERSION
log() { printf '[vm-node tools] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$VM_CACHE"

# --- kernel, QEMU, busybox, mkfs.ext4 (the real-kernel suite's script) ---------------------------
kernel_vars=$("$ROOT/scripts/kernel/ensure-tools.sh")
eval "$kernel_vars"

# apt is shared with other scripts of the project: one apt-get at a time.
. "$(dirname "${BASH_SOURCE[0]}")/../toolchain/apt-locked.sh"

# --- host tools: socat (guestfwd), qemu-img (a copy-on-write disk per run over the seeded template) --
host_missing=()
command -v socat >/dev/null 2>&1 || host_missing+=(socat)
command -v qemu-img >/dev/null 2>&1 || host_missing+=(qemu-utils)
if [ ${#host_missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "${host_missing[*]} missing and installing needs root (apt-get install ${host_missing[*]})"
  log "apt-get install ${host_missing[*]}"
  install_host() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${host_missing[@]}" >&2 \
      || { apt-get update -q -o DPkg::Lock::Timeout=600 >&2 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${host_missing[@]}" >&2; }
  }
  apt_locked install_host
fi

# --- Debian packages, fetched and unpacked (never installed) -------------------------------------
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)' || true; }
# unpack_debs <prefix> <package...>: apt's candidate of each package, downloaded and unpacked into
# $VM_CACHE/<prefix>-<hash of the versions>/root (kept while the versions stay, older ones removed).
# Prints that directory.
unpack_debs() {
  local prefix=$1 p v key dir versions=()
  shift
  for p in "$@"; do
    v=$(candidate "$p")
    if [ -z "$v" ]; then apt_locked apt-get update -q -o DPkg::Lock::Timeout=600 >&2; v=$(candidate "$p"); fi
    [ -n "$v" ] || die "apt knows no candidate for $p"
    versions+=("$p=$v")
  done
  key=$(printf '%s\n' "${versions[@]}" | sha256sum | cut -c1-12)
  dir=$VM_CACHE/$prefix-$key
  if [ ! -f "$dir/.ready" ]; then
    log "downloading ${versions[*]}"
    rm -rf "$dir"
    mkdir -p "$dir/debs" "$dir/root"
    (cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root "${versions[@]}" >&2)
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    printf '%s\n' "${versions[@]}" > "$dir/versions"
    touch "$dir/.ready"
    for old in "$VM_CACHE/$prefix"-*; do [ "$old" = "$dir" ] || rm -rf "$old"; done
  fi
  echo "$dir"
}

# The guest's container runtime.
DEBS=$(unpack_debs debs containerd runc containernetworking-plugins libseccomp2)
for f in usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr usr/sbin/runc usr/lib/cni/loopback usr/lib/cni/ptp usr/lib/cni/host-local; do
  [ -x "$DEBS/root/$f" ] || die "$f is not in the unpacked packages ($DEBS/root)"
done

# The registry module images are pulled from (run on this machine).
REG=$(unpack_debs registry docker-registry)
[ -x "$REG/root/usr/bin/docker-registry" ] || die "usr/bin/docker-registry is not in the unpacked package ($REG/root)"

# --- kubelet ---------------------------------------------------------------------------------------
# The guest's kubelet, and the host's control plane (with controllers) and helm for the chart.
BIN_DIR=$("$ROOT/scripts/toolchain/ensure-binaries.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet helm)
[ -x "$BIN_DIR/kubelet" ] || die "no kubelet in $BIN_DIR"

# --- pause image -----------------------------------------------------------------------------------
PAUSE_TAR=$VM_CACHE/pause-$PAUSE_VERSION.tar
K8S_VERSION=$K8S_VERSION PAUSE_VERSION=$PAUSE_VERSION "$ROOT/scripts/toolchain/build-pause.sh" "$PAUSE_IMAGE" "$PAUSE_TAR"

printf '%s\n' "$kernel_vars"
cat <<EOF
GUEST_DEBS_ROOT=$DEBS/root
BIN_DIR=$BIN_DIR
PAUSE_IMAGE=$PAUSE_IMAGE
PAUSE_TAR=$PAUSE_TAR
REGISTRY_BIN=$REG/root/usr/bin/docker-registry
EOF
