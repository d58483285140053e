#!/usr/bin/env bash
# `npm test`: every test layer, in order (the real-kernel and real-node layers beside integration).
# Installs and builds what the layers need (Kubernetes binaries from the Go module proxy, Debian's
# kernel and QEMU, a local Docker engine and the images), reusing caches under ${KLP_CACHE:-~/.cache/kpatch-operator}.
# KLP_TEST_LAYERS="unit integration kernel" selects layers (default: all).
# A test that does not run (a missing prerequisite, a skip) fails its layer: this is what CI runs,
# and a skip must never read as a pass. KLP_ALLOW_SKIPS=1 relaxes that for local runs.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${KLP_ALLOW_SKIPS:-}" != 1 ]; then
  export KLP_KERNEL_REQUIRED=1 KLP_VM_NODE_REQUIRED=1
fi
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

# vitest for one project, then the check that every one of its tests ran.
vitest_layer() {
  local project=$1; shift
  "$@" npx vitest run --project "$project" --reporter=default --reporter=json --outputFile.json="$reports/$project.json" || return 1
  [ "${KLP_ALLOW_SKIPS:-}" = 1 ] || node scripts/test/no-skips.mjs "$reports/$project.json" "$project"
}

layers=${KLP_TEST_LAYERS:-"static unit images integration kernel node vm-node"}
failed=()
timing=()

# A layer's line in the summary: record NAME EXIT-STATUS SECONDS [NOTE].
record() {
  if [ "$2" = 0 ]; then
    timing+=("$1: ok in ${3}s${4:-}")
  else
    timing+=("$1: FAILED in ${3}s${4:-}")
    failed+=("$1")
  fi
}

step() {
  local name=$1; shift
  local start=$SECONDS rc=0
  printf '\n=== %s ===\n' "$name"
  "$@" || rc=$?
  record "$name" "$rc" "$((SECONDS - start))"
}

# Beside the integration layer (one test file at a time against one control plane: 23% of this
# machine's two cores on average) runs a background chain: the real-kernel layer (QEMU, one guest at
# a time: 45%), then the real-node layer (a kubelet and its own control plane: 38%). The chain takes
# about as long as integration alone, and the layers share nothing but apt (which they lock). Each
# chained layer's output is held and printed when the loop reaches it; its result and its own time go
# into the summary like any layer's. Listed before integration, a layer runs in the foreground.
kernel_name="real-kernel tests (QEMU)"
node_name="real-node tests (kubelet)"
chain=()
after_integration=""
for layer in $layers; do
  case $layer in
    integration) after_integration=1 ;;
    kernel | node) [ -n "$after_integration" ] && chain+=("$layer") ;;
  esac
done
chain_pid=""
chained() { case " ${chain[*]:-} " in *" $1 "*) return 0 ;; esac; return 1; }
layer_title() { case $1 in kernel) echo "$kernel_name" ;; node) echo "$node_name" ;; esac; }
run_layer() { vitest_layer "$1" env; }
start_chain() {
  [ ${#chain[@]} -gt 0 ] || return 0
  printf '\n=== started beside integration, one after the other: %s; their output follows when they end ===\n' "${chain[*]}"
  (
    for l in "${chain[@]}"; do
      t=$SECONDS
      run_layer "$l" > "$reports/$l.log" 2>&1
      echo $? > "$reports/$l.rc"
      echo $((SECONDS - t)) > "$reports/$l.seconds"
    done
  ) &
  chain_pid=$!
  # A background job of a script ignores the terminal's Ctrl-C: an interrupted run takes the chain,
  # and the QEMU guests and kubelet under it, down with it.
  trap 'kill_tree "$chain_pid"; exit 130' INT TERM
}
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null
}
# The loop reached a chained layer: wait for the chain's end, then report each of its layers.
finish_chain() {
  [ -n "$chain_pid" ] || return 0
  wait "$chain_pid"
  chain_pid=""
  trap - INT TERM
  for l in "${chain[@]}"; do
    local name rc took
    name=$(layer_title "$l")
    rc=$(cat "$reports/$l.rc" 2>/dev/null || echo 1)
    took=$(cat "$reports/$l.seconds" 2>/dev/null || echo "?")
    printf '\n=== %s (ran beside integration) ===\n' "$name"
    cat "$reports/$l.log" 2>/dev/null
    record "$name" "$rc" "$took" ", beside integration"
  done
}

for layer in $layers; do
  case $layer in
    static) step "typecheck" npx tsc --noEmit; step "lint (typescript-eslint, no warnings)" npm run --silent lint; step "dead code (knip)" npm run --silent deadcode ;;
    unit) step "unit tests" vitest_layer unit env ;;
    images) step "bundles and container images" bash -c 'npm run build && bash scripts/images/build.sh' ;;
    integration) start_chain; step "integration tests (real control plane)" vitest_layer integration env ;;
    kernel | node) if chained "$layer"; then finish_chain; else step "$(layer_title "$layer")" run_layer "$layer"; fi ;;
    # The images layer has just built the images: the suite uses them as they are.
    vm-node) step "VM node tests (kubelet in a QEMU guest)" vitest_layer vm-node env KLP_VM_NODE_NO_IMAGE_BUILD=1 ;;
    *) echo "unknown layer $layer"; exit 2 ;;
  esac
done

printf '\n=== summary ===\n'
printf '%s\n' "${timing[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  node scripts/test/failures.mjs "$reports"
  exit 1
fi
