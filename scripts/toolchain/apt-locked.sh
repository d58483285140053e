# Sourced: apt_locked CMD... runs CMD holding $CACHE/.apt.lock, the lock every script of the project
# takes around apt. The test layers that run side by side (scripts/test.sh) may each install on a
# fresh machine, and a second apt-get fails on dpkg's or the lists' lock instead of waiting.
apt_locked() {
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.apt.lock"
  flock 8
  "$@"
  local rc=$?
  flock -u 8
  return $rc
}
