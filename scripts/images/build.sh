#!/usr/bin/env bash
# Builds the container images: kpatch-operator:dev and kpatch-agent:dev (`npm run images`).
#   1. a Docker engine (scripts/images/ensure-docker.sh starts Debian's docker.io when none runs);
#   2. kpatch-debian:bookworm, once: `debootstrap --variant=minbase` from the Debian mirror the
#      machine's apt uses, then `docker import` (no registry pull);
#   3. kpatch-base:bookworm (images/base.Dockerfile): + the Node binary of node_modules/node, rebuilt
#      when that binary changes;
#   4. the bundles (`npm run build`: dist/operator.mjs, dist/node-agent.mjs, dist/kpatch-agent.mjs)
#      and the two images with the legacy builder (DOCKER_BUILDKIT=0) from minimal contexts.
# Env: KLP_CACHE; KLP_DIST (bundles dir, default dist/); KLP_NO_BUNDLE=1 (use the bundles as they are);
#      BASE_IMAGE (use another base that provides node, e.g. node:24-bookworm-slim, and skip 2-3);
#      KLP_OPERATOR_IMAGE / KLP_AGENT_IMAGE (tags); KLP_REBUILD_DEBIAN=1 (redo debootstrap).
# Usage: scripts/images/build.sh [operator|agent|base]...   (default: operator agent)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator agent)
DIST=${KLP_DIST:-$REPO_ROOT/dist}
WORK=$CACHE/images
mkdir -p "$WORK"
scratch=$(mktemp -d "$WORK/ctx.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

"$REPO_ROOT/scripts/images/ensure-docker.sh"

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
image_label() { "$DOCKER" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# The Debian mirror apt really uses here (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
  local m=""
  if [ -d /etc/apt/sources.list.d ]; then
    m=$(awk -v suite="$DEBIAN_SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uri != "" && ok) print uri }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk -v suite="$DEBIAN_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

build_debian() {
  if image_exists "$DEBIAN_IMAGE" && [ -z "${KLP_REBUILD_DEBIAN:-}" ]; then return 0; fi
  local tarball=$WORK/debian-$DEBIAN_SUITE-minbase.tar
  if [ ! -s "$tarball" ] || [ -n "${KLP_REBUILD_DEBIAN:-}" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
      [ "$(id -u)" = 0 ] || die "debootstrap is missing (apt-get install debootstrap)"
      log "installing debootstrap"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    }
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs=$WORK/rootfs-$DEBIAN_SUITE
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (a few minutes, once)"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log $WORK/debootstrap.log)"; }
    # Nothing an image needs: package caches, docs, manuals, most locales.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    printf 'deb %s %s main\n' "$mirror" "$DEBIAN_SUITE" >"$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tarball as $DEBIAN_IMAGE"
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$tarball" "$DEBIAN_IMAGE" >/dev/null
}

build_base() {
  local node node_version ctx
  node=$(readlink -f "$REPO_ROOT/node_modules/node/bin/node")
  [ -x "$node" ] || die "no Node binary at node_modules/node/bin/node (run npm ci)"
  node_version=$("$node" --version)
  local stamp
  stamp="$node_version $(sha256sum "$REPO_ROOT/images/base.Dockerfile" | cut -c1-16)"
  if image_exists "$BASE_IMAGE_TAG" && [ "$(image_label "$BASE_IMAGE_TAG" dev.kpatch.base-stamp)" = "$stamp" ]; then
    return 0
  fi
  build_debian
  ctx=$scratch/base
  mkdir -p "$ctx"
  cp "$node" "$ctx/node"
  log "building $BASE_IMAGE_TAG (Node $node_version)"
  "$DOCKER" build --quiet --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    --label "dev.kpatch.base-stamp=$stamp" -t "$BASE_IMAGE_TAG" -f "$REPO_ROOT/images/base.Dockerfile" "$ctx" >/dev/null
}

bundled=""
bundle() {
  if [ -n "$bundled" ] || [ -n "${KLP_NO_BUNDLE:-}" ] || [ -n "${KLP_DIST:-}" ]; then return 0; fi
  bundled=1
  log "npm run build (esbuild bundles into dist/)"
  (cd "$REPO_ROOT" && npm run --silent build >&2) || die "npm run build failed"
}

# build_app <name> <image> <bundle>...
build_app() {
  local name=$1 image=$2 ctx f
  shift 2
  for f in "$@"; do [ -s "$DIST/$f" ] || die "$DIST/$f is missing: the $name image needs it (npm run build)"; done
  ctx=$scratch/$name
  mkdir -p "$ctx"
  for f in "$@"; do cp "$DIST/$f" "$ctx/"; done
  log "building $image"
  "$DOCKER" build --quiet --network host --build-arg "BASE_IMAGE=$base" \
    --label "dev.kpatch.revision=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$image" -f "$REPO_ROOT/images/$name.Dockerfile" "$ctx" >/dev/null
}

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then build_base; base=$BASE_IMAGE_TAG; fi
built=()
for t in "${targets[@]}"; do
  case $t in
    base) built+=("$base") ;;
    operator) bundle; build_app operator "$OPERATOR_IMAGE" operator.mjs re2js.mjs; built+=("$OPERATOR_IMAGE") ;;
    agent) bundle; build_app agent "$AGENT_IMAGE" node-agent.mjs kpatch-agent.mjs re2js.mjs; built+=("$AGENT_IMAGE") ;;
    *) die "unknown target $t (operator, agent, base)" ;;
  esac
done

# Earlier builds of these images, now untagged, would pile up in the data root.
"$DOCKER" image prune -f --filter label=dev.kpatch.revision >/dev/null || true
"$DOCKER" image prune -f --filter label=dev.kpatch.base-stamp >/dev/null || true

# Sizes (uncompressed, as `docker images` shows them).
for img in "$base" "${built[@]}"; do
  printf '%-28s %s\n' "$img" "$("$DOCKER" image inspect --format '{{.Size}}' "$img" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
done | sort -u
