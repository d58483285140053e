#!/usr/bin/env bash
# Builds the VM node's guest from Debian's packages, the Kubernetes toolchain and the project's images:
#   initramfs-<release>.cpio.gz (gzip -1, a few MB), one per kernel release asked for:
#       busybox-static, scripts/vm-node/guest-init.sh as /init, and the modules of that release the
#       guest needs before anything else (virtio block and net, ext4, overlay for containerd's
#       snapshotter, veth for the pod network); the only part of the guest tied to a release, so
#       nodes on several releases share the rest;
#   sys.img (ext4, mounted read-only at /sysd in the guest; init links /usr, /lib and /lib64 into it):
#       containerd, containerd-shim-runc-v2, ctr, runc (Debian), the CNI plugins loopback, ptp and
#       host-local (Debian's containernetworking-plugins), the kubelet, the libraries they link;
#       images/apps.tar (`docker save` of the agent and operator images) and images/pause.tar,
#       imported with `ctr -n k8s.io images import` at boot (nothing is ever pulled);
#       agent-root/: the agent image's root filesystem (`docker export`), in which init runs
#       `node /app/kpatch-agent.mjs load --all` at boot: the host's kpatch.service;
#   var-template.img (ext4, 4 GiB sparse): the node's /var/lib with those images already imported
#       into containerd's store (see seed_var_template below); absent where loop devices are not
#       available, and then the guest imports at boot.
# Cached as $KLP_CACHE/vm-node/guest-<hash of every input but the release, the images' ids
# included>/, the initramfs of each release beside the rest; a warm run only hashes. Older guests
# are removed.
# Env: KERNEL_RELEASE (scripts/kernel/ensure-tools.sh: the release whose initramfs this run makes
# sure of), AGENT_IMAGE (default kpatch-agent:dev), OPERATOR_IMAGE (default kpatch-operator:dev);
# both images must exist in the local Docker engine (scripts/images/build.sh builds them).
# Prints GUEST=<dir>, INITRAMFS=<file> and the variables of scripts/vm-node/ensure-tools.sh on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
VM_CACHE=$CACHE/vm-node
AGENT_IMAGE=${AGENT_IMAGE:-kpatch-agent:dev}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-kpatch-operator:dev}
log() { printf '[vm-node guest] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

vars=$("$HERE/ensure-tools.sh")
eval "$vars"

"$ROOT/scripts/images/ensure-docker.sh" >&2 || die "no Docker engine (scripts/images/ensure-docker.sh): the images cannot be saved"
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
image_id() { "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || die "image $1 does not exist (scripts/images/build.sh builds it)"; }
agent_id=$(image_id "$AGENT_IMAGE")
operator_id=$(image_id "$OPERATOR_IMAGE")

BUSYBOX=$(command -v busybox)
D=$GUEST_DEBS_ROOT
bins=("$D/usr/bin/containerd" "$D/usr/bin/containerd-shim-runc-v2" "$D/usr/bin/ctr" "$D/usr/sbin/runc" "$BIN_DIR/kubelet")
cni=(loopback ptp host-local)

# Kernel modules, in load order (modprobe resolves the dependencies in the unpacked package).
mapfile -t bootmods < <(for m in virtio_pci virtio_blk virtio_net ext4 overlay veth; do
    modprobe -d "$KDIR/root" -S "$KREL" --show-depends "$m"; done \
  | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++')

# Libraries: what ldd lists for the binaries, resolved on this (Debian bookworm) machine, except
# libseccomp which comes from the downloaded package.
libs_of() { LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu ldd "$1" | awk '/=>/ { print $3 } /^\t\/lib/ { print $1 }' | grep '^/'; }
mapfile -t libs < <(for b in "${bins[@]}"; do libs_of "$b"; done | sort -u)

inputs=("$BUSYBOX" "${bins[@]}" "${libs[@]}" "$PAUSE_TAR" "$HERE/guest-init.sh" "$HERE/build-guest.sh")
for p in "${cni[@]}"; do inputs+=("$D/usr/lib/cni/$p"); done
# var-template.img: the node's /var/lib with the images already in containerd's store. The guest
# imports the same tarballs at boot when they are missing (ctr -n k8s.io images import), which under
# TCG takes 3-4 minutes of the guest's CPU; so the very same containerd (Debian's, from the
# downloaded package) imports them here, on this machine, into the ext4 image loop-mounted at what
# will be the guest's /var/lib/containerd, with the overlayfs snapshotter the guest uses. Each run
# boots a copy-on-write disk over it (qemu-img create -b). Without loop devices (or not root) there
# is no template, and the guest imports at boot.
seed_var_template() {
  local S=$1 img=$OUT/var-template.img mnt run pid rc=0
  if [ "$(id -u)" != 0 ]; then log "not root: no seeded /var/lib template (the guest imports at boot)"; return 0; fi
  truncate -s 4G "$img.tmp"
  mkfs.ext4 -q -F -L klpvar -i 65536 -E lazy_itable_init=0,lazy_journal_init=0 "$img.tmp"
  mnt=$(mktemp -d "$VM_CACHE/seed-mnt.XXXXXX")
  run=$(mktemp -d /run/klp-vm-seed.XXXXXX)
  if ! mount -o loop "$img.tmp" "$mnt" 2>/dev/null; then
    log "cannot loop-mount an ext4 image here: no seeded /var/lib template (the guest imports at boot)"
    rm -rf "$mnt" "$run" "$img.tmp"
    return 0
  fi
  cat > "$run/config.toml" <<TOML
version = 2
root = "$mnt/containerd"
state = "$run/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$run/containerd.sock"
TOML
  log "seeding containerd's store for the guest (ctr images import on this machine)"
  "$D/usr/bin/containerd" --config "$run/config.toml" > "$run/containerd.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do "$D/usr/bin/ctr" -a "$run/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.2; done
  for set in pause apps; do
    "$D/usr/bin/ctr" -a "$run/containerd.sock" -n k8s.io images import --snapshotter overlayfs "$S/images/$set.tar" >&2 || rc=1
  done
  "$D/usr/bin/ctr" -a "$run/containerd.sock" -n k8s.io images ls -q | sort > "$OUT/var-template.images" || rc=1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  umount "$mnt"
  rm -rf "$mnt" "$run"
  for n in $(cat "$S/images/pause.names" "$S/images/apps.names"); do grep -qxF "$n" "$OUT/var-template.images" || rc=1; done
  if [ $rc != 0 ]; then rm -f "$img.tmp"; die "seeding containerd's store failed"; fi
  mv "$img.tmp" "$img"
}

hash=$( { echo "$AGENT_IMAGE=$agent_id $OPERATOR_IMAGE=$operator_id"; sha256sum "${inputs[@]}" | cut -d' ' -f1; } \
  | sha256sum | cut -c1-16)
OUT=$VM_CACHE/guest-$hash
if [ ! -f "$OUT/.ready" ]; then
  log "building guest $OUT"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  # --- sys disk ---
  S=$OUT/sys
  mkdir -p "$S"/{usr/bin,usr/sbin,usr/lib/cni,usr/lib/x86_64-linux-gnu,lib64,images,agent-root}
  for b in "${bins[@]}"; do
    case $b in */sbin/*) cp "$b" "$S/usr/sbin/" ;; *) cp "$b" "$S/usr/bin/" ;; esac
  done
  for p in "${cni[@]}"; do cp "$D/usr/lib/cni/$p" "$S/usr/lib/cni/"; done
  for l in "${libs[@]}"; do
    case $l in
      /lib64/*) cp -L "$l" "$S/lib64/" ;;
      *) cp -L "$l" "$S/usr/lib/x86_64-linux-gnu/" ;;
    esac
  done
  log "docker save $AGENT_IMAGE $OPERATOR_IMAGE"
  "$DOCKER" save -o "$S/images/apps.tar" "$AGENT_IMAGE" "$OPERATOR_IMAGE"
  cp "$PAUSE_TAR" "$S/images/pause.tar"
  # What init checks before importing again (containerd's normalized names).
  printf '%s\n' "$PAUSE_IMAGE" > "$S/images/pause.names"
  for i in "$AGENT_IMAGE" "$OPERATOR_IMAGE"; do
    case $i in */*) echo "$i" ;; *) echo "docker.io/library/$i" ;; esac
  done > "$S/images/apps.names"
  log "docker export of $AGENT_IMAGE (kpatch.service runs its CLI at boot)"
  cid=$("$DOCKER" create "$AGENT_IMAGE" true)
  "$DOCKER" export "$cid" | tar -x -C "$S/agent-root" --numeric-owner
  "$DOCKER" rm "$cid" >/dev/null
  [ -x "$S/agent-root/usr/local/bin/node" ] || [ -x "$S/agent-root/usr/bin/node" ] || die "$AGENT_IMAGE has no node binary"
  [ -f "$S/agent-root/app/kpatch-agent.mjs" ] || die "$AGENT_IMAGE has no /app/kpatch-agent.mjs"
  mkdir -p "$S"/agent-root/{proc,sys,dev,tmp,run,host/proc,host/sys,host/var/lib/kpatch}
  size_mb=$(( $(du -sm "$S" | cut -f1) * 11 / 10 + 64 ))
  mkfs.ext4 -q -F -O ^has_journal -L klpsys -d "$S" "$OUT/sys.img" "${size_mb}M"
  seed_var_template "$S"
  rm -rf "$S"
  touch "$OUT/.ready"
  for old in "$VM_CACHE"/guest-*; do [ "$old" = "$OUT" ] || rm -rf "$old"; done
fi

# --- the initramfs of this release ---
# Keyed by the package's version too: Debian rebuilds a release's package under the same ABI name.
INITRAMFS=$OUT/initramfs-$KREL-$KVERSION.cpio.gz
if [ ! -f "$INITRAMFS" ]; then
  log "building the initramfs for $KREL"
  R=$(mktemp -d "$OUT/initramfs.XXXXXX")
  mkdir -p "$R"/{bin,proc,sys,dev,run,tmp,root,sysd,etc,var/lib,var/log,boot-modules}
  cp "$BUSYBOX" "$R/bin/busybox"
  for a in $("$BUSYBOX" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  for m in "${bootmods[@]}"; do cp "$m" "$R/boot-modules/"; echo "/boot-modules/$(basename "$m")"; done > "$R/boot-modules/list"
  cp "$HERE/guest-init.sh" "$R/init"
  chmod 0755 "$R/init"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
  echo "$KREL" > "$R/etc/klp-release"
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$INITRAMFS.tmp"
  rm -rf "$R"
  mv "$INITRAMFS.tmp" "$INITRAMFS"
fi
printf '%s\n' "$vars"
echo "GUEST=$OUT"
echo "INITRAMFS=$INITRAMFS"
