#!/usr/bin/env bash
# Makes sure a Docker engine answers on the default socket (/var/run/docker.sock): uses a running
# one, else starts Debian's docker.io daemon (installing it with apt-get when missing, as root).
#
# The daemon runs without iptables or a bridge (this machine has neither to spare), with cgroupfs,
# its data root under $KLP_CACHE/docker/data and its log in $KLP_CACHE/docker/dockerd.log. Builds
# and containers must use host or none networking. It keeps running after this script (like a
# service); stop it with: kill "$(cat "$KLP_CACHE/docker/dockerd.pid")".
# Exit 0: engine ready. Exit 2: no engine can run here (message on stderr says why).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if docker_ready; then
  log "Docker engine $("$DOCKER" version --format '{{.Server.Version}}') is running"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "no dockerd and cannot install docker.io (needs root and apt-get)"
    exit 2
  fi
  log "installing Debian's docker.io"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
  [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
fi
if [ "$(id -u)" != 0 ]; then
  log "dockerd is installed but not running, and starting it needs root"
  exit 2
fi

mkdir -p "$DOCKER_STATE/data"
pidfile=$DOCKER_STATE/dockerd.pid
logfile=$DOCKER_STATE/dockerd.log
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  log "dockerd (pid $(cat "$pidfile")) is starting; waiting for it"
else
  log "starting dockerd (data root $DOCKER_STATE/data, log $logfile)"
  # A pidfile left by a daemon that died (machine restarted, daemon killed) names a dead pid: drop
  # it, or the wait below would read it before the new daemon rewrites it and give up at once.
  rm -f "$pidfile"
  drop_stale_containerd_pidfile "${DOCKER_EXEC_ROOT:-/var/run/docker}"
  # setsid: the daemon outlives this script and its process group.
  setsid dockerd \
    --iptables=false --ip-masq=false --bridge=none \
    --exec-opt native.cgroupdriver=cgroupfs \
    --data-root "$DOCKER_STATE/data" \
    --pidfile "$pidfile" \
    --host unix:///var/run/docker.sock \
    >>"$logfile" 2>&1 </dev/null &
fi

for _ in $(seq 1 120); do
  if docker_ready; then
    log "Docker engine $("$DOCKER" version --format '{{.Server.Version}}') is ready"
    exit 0
  fi
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then break; fi
  sleep 0.5
done
log "dockerd did not come up; last lines of $logfile:"
tail -n 30 "$logfile" >&2 || true
exit 2
