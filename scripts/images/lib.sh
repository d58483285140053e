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

# dockerd reuses the containerd named by <exec root>/containerd/containerd.pid when that pid is
# alive. After the machine or the daemon was killed, the pid can belong to any other process; dockerd
# then waits for a containerd that never answers and gives up ("timeout waiting for containerd").
# Drops the pid file unless it names a live containerd. $1: dockerd's exec root.
drop_stale_containerd_pidfile() {
  local pidfile=$1/containerd/containerd.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(tr -dc 0-9 <"$pidfile")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd ]; then return 0; fi
  log "dropping $pidfile: it names pid ${pid:-?}, which is not a running containerd"
  rm -f "$pidfile"
}
