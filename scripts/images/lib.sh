# Shared by the scripts in scripts/images/ (sourced, not run).
# KLP_CACHE (default ~/.cache/kpatch-operator) holds the Docker data root and the Debian rootfs.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
DOCKER_STATE=$CACHE/docker
DEBIAN_SUITE=bookworm
# Images the scripts make. kpatch-debian is the bare debootstrap rootfs, kpatch-base adds Node 24.
DEBIAN_IMAGE=kpatch-debian:$DEBIAN_SUITE
BASE_IMAGE_TAG=kpatch-base:$DEBIAN_SUITE
OPERATOR_IMAGE=${KLP_OPERATOR_IMAGE:-kpatch-operator:dev}
AGENT_IMAGE=${KLP_AGENT_IMAGE:-kpatch-agent:dev}

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Debian's docker.io client matches its daemon (20.10); a newer client elsewhere on PATH works
# too (it negotiates the API version) but prints deprecation noise for the legacy builder.
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER_BUILDKIT=0

docker_ready() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
