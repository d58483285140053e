#!/usr/bin/env bash
# Installs what the real-kernel tests need on a fresh Debian bookworm machine (root, Debian's mirror):
#   - host tools from apt, each only when missing: QEMU, busybox-static, cpio, kmod, make, gcc-12,
#     e2fsprogs, openssl (a key to sign one test module with), and the runtime libraries of the
#     kernel's build helpers;
#   - Debian's kernel image, headers and kbuild for one release, fetched with `apt-get download` and
#     unpacked (dpkg-deb -x) into $KLP_CACHE/kernel/<release>/ — nothing is installed into the
#     system's /boot, /lib/modules or /usr/src.
# Reused when present. Prints shell assignments (KREL=..., VMLINUZ=..., KBUILD=..., MODDIR=...) on
# stdout for the caller; logs go to stderr.
# Usage: scripts/kernel/ensure-tools.sh
# Env: KERNEL_RELEASE overrides the release (the one variable naming it). When the pinned release is
# no longer on the mirror (Debian drops an ABI's packages once the next one ships) and it is not
# cached, the release that linux-image-amd64 currently depends on is used instead, with a warning.
set -euo pipefail

PINNED_RELEASE=6.1.0-56-amd64
KREL=${KERNEL_RELEASE:-$PINNED_RELEASE}
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}

log() { printf '[ensure-tools] %s\n' "$*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/../toolchain/apt-locked.sh"
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)

# --- host tools -------------------------------------------------------------------------------
declare -A need=(
  [qemu-system-x86_64]=qemu-system-x86
  [busybox]=busybox-static
  [cpio]=cpio
  [insmod]=kmod
  [make]=make
  [gcc-12]=gcc-12
  [mkfs.ext4]=e2fsprogs
  [ldd]=libc-bin
  [openssl]=openssl
)
missing=()
for cmd in "${!need[@]}"; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# busybox must be the static build: it is copied into the guest without libraries.
if command -v busybox >/dev/null 2>&1 && ! dpkg -s busybox-static >/dev/null 2>&1; then missing+=(busybox-static); fi
# Runtime libraries of the prebuilt kbuild helpers (modpost, objtool, ...).
for pkg in libelf1 libssl3; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt_locked apt-get install "${APT_OPTS[@]}" "${missing[@]}" >&2; then
    apt_locked apt-get update -q -o DPkg::Lock::Timeout=600 >&2
    apt_locked apt-get install "${APT_OPTS[@]}" "${missing[@]}" >&2
  fi
fi

# --- kernel packages --------------------------------------------------------------------------
# Candidate version of the image package (the headers and kbuild packages are pinned to it).
candidate() { apt-cache policy "linux-image-$KREL" 2>/dev/null | sed -n "s/^ *Candidate: //p" | grep -v "(none)" || true; }
KDIR=$CACHE/kernel/$KREL
if [ ! -f "$KDIR/.ready" ]; then
  ver=$(candidate)
  if [ -z "$ver" ]; then
    apt_locked apt-get update -q -o DPkg::Lock::Timeout=600 >&2
    ver=$(candidate)
  fi
  if [ -z "$ver" ] && [ -z "${KERNEL_RELEASE:-}" ]; then
    current=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*-amd64\)$/\1/p' | head -n1)
    if [ -n "$current" ]; then
      log "WARNING: linux-image-$KREL is gone from the mirror; using the current $current (update PINNED_RELEASE)"
      KREL=$current
      KDIR=$CACHE/kernel/$KREL
      ver=$(candidate)
    fi
  fi
  [ -n "$ver" ] || { log "linux-image-$KREL is not known to apt"; exit 3; }
fi
FLAVOUR=${KREL##*-}            # amd64
ABI=${KREL%-"$FLAVOUR"}        # 6.1.0-56
SERIES=${ABI%%.0-*}            # 6.1 (linux-kbuild-6.1)
if [ ! -f "$KDIR/.ready" ]; then
  mkdir -p "$KDIR"
  log "downloading kernel $KREL ($ver)"
  rm -rf "$KDIR/debs" "$KDIR/root"
  mkdir -p "$KDIR/debs" "$KDIR/root"
  # linux-kbuild-<series> is one package for every ABI of the series: the archive keeps only its
  # newest build, so it is taken at the version apt has, not the image's.
  kbuild_ver=$(apt-cache policy "linux-kbuild-$SERIES" 2>/dev/null | sed -n "s/^ *Candidate: //p" | grep -v "(none)" || true)
  [ -n "$kbuild_ver" ] || { log "linux-kbuild-$SERIES is not known to apt"; exit 3; }
  [ "$kbuild_ver" = "$ver" ] || log "linux-kbuild-$SERIES at $kbuild_ver (the archive's), image at $ver"
  (cd "$KDIR/debs" && apt_locked apt-get download -q -o APT::Sandbox::User=root \
    "linux-image-$KREL=$ver" "linux-headers-$KREL=$ver" \
    "linux-headers-$ABI-common=$ver" "linux-kbuild-$SERIES=$kbuild_ver" >&2)
  for deb in "$KDIR"/debs/*.deb; do dpkg-deb -x "$deb" "$KDIR/root"; done
  # The flavour's Makefile includes the common one by absolute path: point it into the cache.
  printf 'include %s/root/usr/src/linux-headers-%s-common/Makefile\n' "$KDIR" "$ABI" \
    > "$KDIR/root/usr/src/linux-headers-$KREL/Makefile"
  # modules.dep for the unpacked tree (the package leaves it to its postinst).
  depmod -b "$KDIR/root" "$KREL"
  echo "$ver" > "$KDIR/version"
  touch "$KDIR/.ready"
fi

cat <<VARS
KREL=$KREL
KVERSION=$(cat "$KDIR/version")
KDIR=$KDIR
VMLINUZ=$KDIR/root/boot/vmlinuz-$KREL
KBUILD=$KDIR/root/usr/src/linux-headers-$KREL
MODDIR=$KDIR/root/lib/modules/$KREL
VARS
