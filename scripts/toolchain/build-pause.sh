#!/usr/bin/env bash
# Builds Kubernetes' pause image from source, for containerds that can never pull it: upstream's
# build/pause/linux/pause.c (from the k8s.io/kubernetes module in the Go module cache, downloaded
# from the Go module proxy when absent) compiled with upstream's flags and `gcc -static`, packed as
# a docker-archive tarball for `ctr -n k8s.io images import`. Used by the real node
# (scripts/node/ensure-tools.sh) and the VM node (scripts/vm-node/ensure-tools.sh).
# Usage: scripts/toolchain/build-pause.sh <image name> <output tar>   (does nothing when the tar exists)
# Env: K8S_VERSION (default v1.37.2), PAUSE_VERSION (default 3.10.2).
set -euo pipefail
image=${1:?usage: build-pause.sh <image name> <output tar>}
out=${2:?usage: build-pause.sh <image name> <output tar>}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
PAUSE_VERSION=${PAUSE_VERSION:-3.10.2}
log() { printf '[pause] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ -s "$out" ] && exit 0

command -v gcc >/dev/null 2>&1 || die "gcc is missing (apt-get install gcc)"
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || die "libc6-dev is missing (gcc -static needs libc.a)"
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/pause.XXXXXX")
trap 'rm -rf "$work"' EXIT

src=""
for d in "$(go env GOMODCACHE 2>/dev/null || true)" "$HOME/go/pkg/mod"; do
  if [ -n "$d" ] && [ -f "$d/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c" ]; then
    src=$d/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
    break
  fi
done
if [ -z "$src" ]; then
  log "downloading k8s.io/kubernetes@$K8S_VERSION from the Go module proxy for pause.c"
  dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  src=$dir/build/pause/linux/pause.c
  [ -f "$src" ] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION"
fi

mkdir -p "$work/rootfs" "$work/archive"
# Upstream's Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV)
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-klp" -o "$work/rootfs/pause" "$src"
strip "$work/rootfs/pause"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
# Upstream's image: ENTRYPOINT ["/pause"], USER 65535:65535.
printf '{"architecture":"amd64","os":"linux","config":{"User":"65535:65535","Entrypoint":["/pause"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"gcc -static build/pause/linux/pause.c (scripts/toolchain/build-pause.sh)"}]}\n' \
  "$layer_sha" >"$work/config.json"
config_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mkdir -p "$work/archive/$layer_sha"
mv "$work/layer.tar" "$work/archive/$layer_sha/layer.tar"
mv "$work/config.json" "$work/archive/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' "$config_sha" "$image" "$layer_sha" >"$work/archive/manifest.json"
tar --numeric-owner --owner=0 --group=0 -C "$work/archive" -cf "$out.tmp" .
mv "$out.tmp" "$out"
log "pause image $image -> $out ($(du -h "$out" | cut -f1))"
