#!/usr/bin/env bash
# Builds the real-kernel test guest from Debian's packages and the project's own files:
#   initramfs.cpio.gz (gzip -1, ~2 MB): busybox-static, the block/ext4 modules of Debian's kernel
#       that the disks need, and scripts/kernel/guest-init.sh as /init;
#   tools.img (ext4, read-only in the guest, mounted at /tools): kmod with the libraries ldd lists,
#       the Node binary the project pins (node_modules/node) with its libraries, the agent bundle,
#       the guest runner bundle and the test modules. Init links /lib, /lib64, /usr, /sbin and
#       /opt/klp into it. Keeping Node (126 MB) out of the initramfs saves ~9 s of unpacking per
#       boot under TCG.
# Cached as $KDIR/guest-<hash of every input>/; a warm run only hashes. Older guests are removed.
# Env: RUNNER=<guest-runner.mjs> (required), AGENT=<kpatch-agent.mjs> (optional: without it the
# guest can only run bare-insmod steps), MODULES=<dir of built .ko> (default: build-modules.sh),
# FOREIGN_MODULES=<dir of .ko built for another release> (optional: copied to /opt/klp/foreign,
# with that release in /opt/klp/foreign/release, for the refusals of another release's build).
# Prints GUEST=<dir> (initramfs.cpio.gz, tools.img) and the ensure-tools.sh variables on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
log() { printf '[build-guest] %s\n' "$*" >&2; }

vars=$("$HERE/ensure-tools.sh")
eval "$vars"
[ -n "${MODULES:-}" ] || eval "$("$HERE/build-modules.sh")"
: "${RUNNER:?RUNNER=<guest-runner.mjs> is required}"
AGENT=${AGENT:-}
NODE=$(readlink -f "$ROOT/node_modules/node/bin/node")
BUSYBOX=$(command -v busybox)
KMOD=$(command -v kmod)
[ -x "$NODE" ] || { log "no node binary at node_modules/node/bin/node (npm ci first)"; exit 3; }

# Kernel modules needed before the disks can be mounted, in load order.
mapfile -t bootmods < <(for m in virtio_pci virtio_blk ext4; do
    modprobe -d "$KDIR/root" -S "$KREL" --show-depends "$m"; done \
  | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++')

libs_of() { ldd "$1" | awk '/=>/ { print $3 } /^\t\/lib/ { print $1 }' | grep '^/'; }
mapfile -t libs < <( { libs_of "$NODE"; libs_of "$KMOD"; } | sort -u)

inputs=("$NODE" "$BUSYBOX" "$KMOD" "${libs[@]}" "${bootmods[@]}" "$RUNNER" "$HERE/guest-init.sh" \
  "$HERE/build-guest.sh" "$MODULES"/*.ko)
[ -z "$AGENT" ] || inputs+=("$AGENT")
FOREIGN_MODULES=${FOREIGN_MODULES:-}
[ -z "$FOREIGN_MODULES" ] || inputs+=("$FOREIGN_MODULES"/*.ko)
hash=$( { echo "$KREL $KVERSION agent=${AGENT:+yes}"; sha256sum "${inputs[@]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
OUT=$KDIR/guest-$hash
if [ ! -f "$OUT/.ready" ]; then
  log "building guest $OUT"
  rm -rf "$OUT"
  # --- initramfs ---
  R=$OUT/initramfs
  mkdir -p "$R"/{bin,proc,sys,dev,run,tmp,root,tools,opt,etc,var/lib/kpatch,boot-modules}
  cp "$BUSYBOX" "$R/bin/busybox"
  for a in $("$BUSYBOX" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
  for m in "${bootmods[@]}"; do cp "$m" "$R/boot-modules/"; echo "/boot-modules/$(basename "$m")"; done \
    > "$R/boot-modules/list"
  cp "$HERE/guest-init.sh" "$R/init"
  chmod 0755 "$R/init"
  echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$OUT/initramfs.cpio.gz"
  # --- tools disk ---
  T=$OUT/tools
  mkdir -p "$T"/{sbin,usr/bin,lib64,klp/modules}
  cp "$KMOD" "$T/sbin/kmod"
  for a in insmod rmmod lsmod modinfo modprobe depmod; do ln -s kmod "$T/sbin/$a"; done
  cp "$NODE" "$T/usr/bin/node"
  for l in "${libs[@]}"; do mkdir -p "$T$(dirname "$l")"; cp -L "$l" "$T$l"; done
  cp "$MODULES"/*.ko "$T/klp/modules/"
  cp "$RUNNER" "$T/klp/guest-runner.mjs"
  [ -z "$AGENT" ] || cp "$AGENT" "$T/klp/kpatch-agent.mjs"
  if [ -n "$FOREIGN_MODULES" ]; then
    mkdir -p "$T/klp/foreign"
    cp "$FOREIGN_MODULES"/*.ko "$T/klp/foreign/"
    modinfo -F vermagic "$FOREIGN_MODULES/klp_test_v1.ko" | cut -d' ' -f1 > "$T/klp/foreign/release"
  fi
  echo "$KREL" > "$T/klp/release"
  size_mb=$(( $(du -sm "$T" | cut -f1) * 12 / 10 + 16 ))
  mkfs.ext4 -q -F -O ^has_journal -L klptools -d "$T" "$OUT/tools.img" "${size_mb}M"
  rm -rf "$R" "$T"
  touch "$OUT/.ready"
  for old in "$KDIR"/guest-*; do [ "$old" = "$OUT" ] || rm -rf "$old"; done
fi
printf '%s\n' "$vars"
echo "MODULES=$MODULES"
echo "GUEST=$OUT"
