#!/usr/bin/env bash
# Builds a module image: FROM scratch with one .ko file and nothing else (no shell, no cp, no libc:
# the agent pod copies the file out with a tool of its own), and either saves it as a docker-archive
# tarball for `ctr -n k8s.io images import` into a containerd that cannot pull (kubelet tests), or
# pushes it to the registry its name starts with (`--push`; a registry on 127.0.0.1 needs no TLS).
# Usage: scripts/images/module-image.sh <module.ko> <path-in-image> <name:tag> <out.tar | --push>
# Prints the tarball's path, or with --push the pushed reference pinned by digest (<name>@sha256:…).
# A tarball's digest is what containerd computes on import (`ctr images import --digests
# --base-name <name>` names it <name>@sha256:<digest>).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 4 ] || die "usage: $0 <module.ko> <path-in-image> <name:tag> <out.tar | --push>"
ko=$1 inner=$2 image=$3 out=$4
[ -s "$ko" ] || die "$ko is missing or empty"
case $inner in /*.ko) ;; *) die "the path in the image must be absolute and end in .ko: $inner" ;; esac
"$REPO_ROOT/scripts/images/ensure-docker.sh"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$ko" "$ctx/module.ko"
printf 'FROM scratch\nCOPY module.ko %s\n' "$inner" >"$ctx/Dockerfile"
"$DOCKER" build --quiet --label dev.kpatch.module-image=1 -t "$image" "$ctx" >/dev/null
if [ "$out" = --push ]; then
  pushed=$("$DOCKER" push "$image")
  "$DOCKER" image rm "$image" >/dev/null
  digest=$(printf '%s\n' "$pushed" | sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' | tail -n 1)
  [ -n "$digest" ] || die "docker push $image printed no digest: $pushed"
  log "$image -> ${image%:*}@$digest"
  echo "${image%:*}@$digest"
  exit 0
fi
"$DOCKER" save -o "$out.tmp" "$image"
mv "$out.tmp" "$out"
# The tag is in the tarball now; the image itself need not stay in this Docker's data root.
"$DOCKER" image rm "$image" >/dev/null
log "$image -> $out ($(du -h "$out" | cut -f1))"
echo "$out"
