#!/usr/bin/env bash
# Builds a module image: FROM scratch with one .ko file and nothing else (no shell, no cp, no libc:
# the agent pod copies the file out with a tool of its own), and saves it as a docker-archive
# tarball for `ctr -n k8s.io images import` into a containerd that cannot pull (kubelet tests).
# Usage: scripts/images/module-image.sh <module.ko> <path-in-image> <name:tag> <out.tar>
# Prints the tarball's path. The image's digest is what containerd computes on import
# (`ctr images import --digests --base-name <name>` names it <name>@sha256:<digest>).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 4 ] || die "usage: $0 <module.ko> <path-in-image> <name:tag> <out.tar>"
ko=$1 inner=$2 image=$3 out=$4
[ -s "$ko" ] || die "$ko is missing or empty"
case $inner in /*.ko) ;; *) die "the path in the image must be absolute and end in .ko: $inner" ;; esac
"$REPO_ROOT/scripts/images/ensure-docker.sh"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$ko" "$ctx/module.ko"
printf 'FROM scratch\nCOPY module.ko %s\n' "$inner" >"$ctx/Dockerfile"
"$DOCKER" build --quiet --label dev.kpatch.module-image=1 -t "$image" "$ctx" >/dev/null
"$DOCKER" save -o "$out.tmp" "$image"
mv "$out.tmp" "$out"
# The tag is in the tarball now; the image itself need not stay in this Docker's data root.
"$DOCKER" image rm "$image" >/dev/null
log "$image -> $out ($(du -h "$out" | cut -f1))"
echo "$out"
