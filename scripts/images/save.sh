#!/usr/bin/env bash
# Saves kpatch-operator:dev and kpatch-agent:dev as docker-archive tarballs, for
# `ctr -n k8s.io images import <tar>` into a containerd that cannot pull (kubelet tests, QEMU guest).
# Usage: scripts/images/save.sh [out-dir]   (default $KLP_CACHE/images/out); prints the paths.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out=${1:-$CACHE/images/out}
mkdir -p "$out"
"$REPO_ROOT/scripts/images/ensure-docker.sh"
for img in "$OPERATOR_IMAGE" "$AGENT_IMAGE"; do
  "$DOCKER" image inspect "$img" >/dev/null 2>&1 || die "$img does not exist: run scripts/images/build.sh (npm run images)"
  file=$out/${img//[:\/]/_}.tar
  "$DOCKER" save -o "$file.tmp" "$img"
  mv "$file.tmp" "$file"
  log "$img -> $file ($(du -h "$file" | cut -f1))"
  echo "$file"
done
