#!/usr/bin/env bash
# Builds the real-kernel test modules (test/kernel/modules/*.c, GPL-2.0) out of tree against Debian's
# headers unpacked by ensure-tools.sh, then derives from klp_test_v1:
#   klp_test_v1_badver.ko  vermagic names another release (one digit of the ABI number changed,
#                          same length, nothing else touched)
#   klp_test_trunc.ko      the first half of klp_test_v1.ko
#   klp_test_v1_rebuilt.ko the same source built again with -DKLP_TEST_V1_REBUILT in its own
#                          directory: the same module name (klp_test_v1), another GNU build-id,
#                          /proc/cmdline says "klp_test_v1 rebuilt"
#   klp_test_v1_signed.ko  klp_test_v1.ko signed (scripts/sign-file, sha256) with a key made for
#                          this build: a valid signature from a key no keyring of the kernel holds
# Output: $KDIR/modules-<hash of sources+release>/out/*.ko, reused when present.
# Prints MODULES=<dir> on stdout; logs go to stderr.
# Usage: scripts/kernel/build-modules.sh   (run ensure-tools.sh first, or let this call it)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRC=$ROOT/test/kernel/modules
log() { printf '[build-modules] %s\n' "$*" >&2; }

eval "$("$HERE/ensure-tools.sh")"

hash=$( { echo "$KREL $KVERSION"; cd "$SRC" && for f in Kbuild *.c; do echo "== $f"; cat "$f"; done; cat "$HERE/build-modules.sh"; } \
  | sha256sum | cut -c1-16)
OUT=$KDIR/modules-$hash
if [ ! -f "$OUT/.ready" ]; then
  log "building modules for $KREL in $OUT"
  rm -rf "$OUT"
  mkdir -p "$OUT/build" "$OUT/out"
  cp "$SRC"/Kbuild "$SRC"/*.c "$OUT/build/"
  make -s -C "$KBUILD" M="$OUT/build" modules >&2
  cp "$OUT"/build/*.ko "$OUT/out/"
  # The same-named rebuild: klp_test_v1.c again, one define apart, so KBUILD_MODNAME is klp_test_v1.
  mkdir -p "$OUT/build-rebuilt"
  cp "$SRC/klp_test_v1.c" "$OUT/build-rebuilt/"
  printf 'obj-m += klp_test_v1.o\nccflags-y += -DKLP_TEST_V1_REBUILT\n' > "$OUT/build-rebuilt/Kbuild"
  make -s -C "$KBUILD" M="$OUT/build-rebuilt" modules >&2
  cp "$OUT/build-rebuilt/klp_test_v1.ko" "$OUT/out/klp_test_v1_rebuilt.ko"
  # Like the distribution's modules: no debug sections (keeps the guest image small).
  strip --strip-debug "$OUT"/out/*.ko
  build_id() { readelf -n "$1" | sed -n 's/^ *Build ID: //p'; }
  [ -n "$(build_id "$OUT/out/klp_test_v1_rebuilt.ko")" ] && [ "$(build_id "$OUT/out/klp_test_v1_rebuilt.ko")" != "$(build_id "$OUT/out/klp_test_v1.ko")" ] \
    || { log "klp_test_v1_rebuilt.ko has no build-id of its own"; exit 1; }

  # Signed after stripping (strip would cut the appended signature). The key is thrown away: the
  # kernel cannot verify the signature, which is the point (lockdown / sig_enforce refuse it).
  openssl req -new -x509 -newkey rsa:2048 -nodes -days 36500 -batch -subj "/CN=klp test key no kernel trusts/" \
    -outform DER -out "$OUT/build/signing_cert.der" -keyout "$OUT/build/signing_key.pem" 2>/dev/null
  "$KBUILD/scripts/sign-file" sha256 "$OUT/build/signing_key.pem" "$OUT/build/signing_cert.der" \
    "$OUT/out/klp_test_v1.ko" "$OUT/out/klp_test_v1_signed.ko"
  rm -f "$OUT/build/signing_key.pem"
  [ "$(tail -c 28 "$OUT/out/klp_test_v1_signed.ko")" = "~Module signature appended~" ] \
    || { log "klp_test_v1_signed.ko has no signature trailer"; exit 1; }

  # Another release of the same length: change the last digit of the ABI number (56 -> 57).
  abi=${KREL%-*}; last=${abi: -1}
  other=${abi%?}$(( last == 9 ? 8 : last + 1 ))-${KREL##*-}
  LC_ALL=C perl -0777 -pe "s/vermagic=\Q$KREL\E /vermagic=$other /g or die 'vermagic not found'" \
    "$OUT/out/klp_test_v1.ko" > "$OUT/out/klp_test_v1_badver.ko"
  cmp -s "$OUT/out/klp_test_v1.ko" "$OUT/out/klp_test_v1_badver.ko" && { log "vermagic edit changed nothing"; exit 1; }
  size=$(stat -c %s "$OUT/out/klp_test_v1.ko")
  head -c $(( size / 2 )) "$OUT/out/klp_test_v1.ko" > "$OUT/out/klp_test_trunc.ko"
  echo "$other" > "$OUT/out/OTHER_RELEASE"
  touch "$OUT/.ready"
  # Older builds go once a day has passed: another checkout (another CI run on this machine, with
  # other module sources) may be using its own right now.
  find "$KDIR" -maxdepth 1 -name 'modules-*' ! -path "$OUT" -mmin +1440 -exec rm -rf {} +
fi
touch "$OUT" # in use: not pruned by another checkout's build for a day
echo "MODULES=$OUT/out"
