#!/usr/bin/env bash
# `npm test`: every test layer, in order (the real-kernel layer beside integration and node).
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

layers=${KLP_TEST_LAYERS:-"static unit images integration node kernel vm-node"}
failed=()
timing=()

step() {
  local name=$1; shift
  local start=$SECONDS
  printf '\n=== %s ===\n' "$name"
  if "$@"; then
    timing+=("$name: ok in $((SECONDS - start))s")
  else
    timing+=("$name: FAILED in $((SECONDS - start))s")
    failed+=("$name")
  fi
}

# The real-kernel layer keeps about one core of two busy (QEMU, one guest at a time; 45% of this
# machine's CPU on average) and shares nothing with the layers of the control plane, which leave
# as much idle: it runs beside the integration and node layers, its output held until it ends.
kernel_beside=""
case " $layers " in *" kernel "*) case " $layers " in *" integration "*|*" node "*) kernel_beside=pending ;; esac ;; esac
kernel_name="real-kernel tests (QEMU)"
start_kernel_beside() {
  [ "$kernel_beside" = pending ] || return 0
  printf '\n=== %s: started beside the next layers, its output follows when it ends ===\n' "$kernel_name"
  kernel_start=$SECONDS
  ( vitest_layer kernel env > "$reports/kernel.log" 2>&1; rc=$?; echo $((SECONDS - kernel_start)) > "$reports/kernel.seconds"; exit $rc ) &
  kernel_beside=$!
}
finish_kernel_beside() {
  local rc=0
  wait "$kernel_beside" || rc=$?
  printf '\n=== %s (ran beside the layers above) ===\n' "$kernel_name"
  cat "$reports/kernel.log"
  local took
  took=$(cat "$reports/kernel.seconds" 2>/dev/null || echo "?")
  if [ $rc = 0 ]; then
    timing+=("$kernel_name: ok in ${took}s, beside integration and node")
  else
    timing+=("$kernel_name: FAILED in ${took}s, beside integration and node")
    failed+=("$kernel_name")
  fi
}

for layer in $layers; do
  case $layer in
    static) step "typecheck" npx tsc --noEmit; step "lint (typescript-eslint, no warnings)" npm run --silent lint; step "dead code (knip)" npm run --silent deadcode ;;
    unit) step "unit tests" vitest_layer unit env ;;
    images) step "bundles and container images" bash -c 'npm run build && bash scripts/images/build.sh' ;;
    integration) start_kernel_beside; step "integration tests (real control plane)" vitest_layer integration env ;;
    node) start_kernel_beside; step "real-node tests (kubelet)" vitest_layer node env ;;
    kernel) case $kernel_beside in "" | pending) kernel_beside=""; step "$kernel_name" vitest_layer kernel env ;; *) finish_kernel_beside ;; esac ;;
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
