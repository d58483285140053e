#!/usr/bin/env bash
# Builds the real-kernel test modules (test/kernel/modules/*.c, GPL-2.0) out of tree against Debian's
# headers unpacked by ensure-tools.sh, then derives two broken copies of klp_test_v1:
#   klp_test_v1_badver.ko  vermagic names another release (one digit of the ABI number changed,
#                          same length, nothing else touched)
#   klp_test_trunc.ko      the first half of klp_test_v1.ko
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
  # Like the distribution's modules: no debug sections (keeps the guest image small).
  strip --strip-debug "$OUT"/out/*.ko

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
  for old in "$KDIR"/modules-*; do [ "$old" = "$OUT" ] || rm -rf "$old"; done
fi
echo "MODULES=$OUT/out"
