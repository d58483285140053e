#!/usr/bin/env bash
# `npm test`: every test layer, in order. Installs and builds what the layers need (Kubernetes
# binaries from the Go module proxy, Debian's kernel and QEMU, a local Docker engine and the
# images), reusing caches under ${KLP_CACHE:-~/.cache/kpatch-operator}.
# KLP_TEST_LAYERS="unit integration kernel" selects layers (default: all).
set -uo pipefail
cd "$(dirname "$0")/.."

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

for layer in $layers; do
  case $layer in
    static) step "typecheck" npx tsc --noEmit ;;
    unit) step "unit tests" npx vitest run --project unit ;;
    images) step "bundles and container images" bash -c 'npm run build && bash scripts/images/build.sh' ;;
    integration) step "integration tests (real control plane)" npx vitest run --project integration ;;
    node) step "real-node tests (kubelet)" npx vitest run --project node ;;
    kernel) step "real-kernel tests (QEMU)" npx vitest run --project kernel ;;
    # The images layer has just built the images: the suite uses them as they are.
    vm-node) step "VM node tests (kubelet in a QEMU guest)" env KLP_VM_NODE_NO_IMAGE_BUILD=1 npx vitest run --project vm-node ;;
    *) echo "unknown layer $layer"; exit 2 ;;
  esac
done

printf '\n=== summary ===\n'
printf '%s\n' "${timing[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
