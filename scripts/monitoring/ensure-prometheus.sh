#!/usr/bin/env bash
# Prometheus and promtool for the monitoring tests (the alert rules' unit tests, the real-node
# scrape), from Debian's `prometheus` package, installed when missing and reused when present.
# The package's systemd service is never enabled or started here: the tests run their own
# prometheus process with their own configuration and data directory.
# Prints KEY=VALUE lines on stdout (PROMETHEUS, PROMTOOL); progress on stderr.
# Env: KLP_CACHE (default ~/.cache/kpatch-operator, for the apt lock shared with the other
# scripts); KLP_NO_INSTALL=1 fails instead of installing.
# Usage: scripts/monitoring/ensure-prometheus.sh [--check]   (--check: exit 0 when both are there,
# 3 if not, installing nothing)
set -euo pipefail

CACHE=${KLP_CACHE:-$HOME/.cache/kpatch-operator}
check_only=""
[ "${1:-}" = "--check" ] && check_only=1

log() { printf '[prometheus-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

have() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if ! have; then
  [ -z "$check_only" ] || { log "missing prometheus/promtool (Debian package prometheus)"; exit 3; }
  [ -z "${KLP_NO_INSTALL:-}" ] || die "missing prometheus/promtool (KLP_NO_INSTALL is set)"
  [ "$(id -u)" = 0 ] || die "missing prometheus/promtool; installing Debian's prometheus package needs root"
  log "apt-get install prometheus"
  install_prometheus() {
    # The package's maintainer scripts would start its service: policy-rc.d (exit 101) forbids
    # that for this install, and only when no policy of the machine's own is in place.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
    fi
    status=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >&2 || status=$?
    [ -z "$policy" ] || rm -f "$policy"
  }
  # Serialized with the project's other scripts that use apt (a second apt-get would fail on
  # dpkg's lock instead of waiting).
  . "$(dirname "${BASH_SOURCE[0]}")/../toolchain/apt-locked.sh"
  apt_locked install_prometheus
  [ "$status" = 0 ] || die "apt-get install prometheus failed ($status)"
  have || die "Debian's prometheus package installed no prometheus/promtool"
fi

cat <<OUT
PROMETHEUS=$(command -v prometheus)
PROMTOOL=$(command -v promtool)
OUT
