#!/usr/bin/env bash
# The numeric suites (ops, layers, optimizer, golden models) once more under each OpenBLAS kernel
# family this CPU can execute, beside the native choice `swift test` already ran: a tolerance
# that holds for one kernel only fails here on any machine. Reuses the release test build.
set -euo pipefail
SWIFT=${SWIFT:-swift}
FILTER='TensorCoreTests|NNTests|OptimTests|ModelsTests'
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo "kernel matrix: this machine sets OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, which the main run used; nothing else to run"
  exit 0
fi
has() { for flag in "$@"; do grep -qw "$flag" /proc/cpuinfo || return 1; done; }
kernels=()
has avx2 fma && kernels+=(Haswell)
has avx512f avx512cd avx512bw avx512dq avx512vl && kernels+=(SkylakeX)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for k in "${kernels[@]}"; do
  if OPENBLAS_CORETYPE=$k "$SWIFT" test -c release -Xswiftc -enable-testing --skip-build --filter "$FILTER" >"$log" 2>&1; then
    echo "kernel matrix: OPENBLAS_CORETYPE=$k"
    grep -E '^(mae|simmim|ummae|greenmim|mixmae|convmae|hf_vitmae)_tiny: |Test run with' "$log" | sed 's/^/  /'
  else
    cat "$log"
    echo "kernel matrix: FAILED under OPENBLAS_CORETYPE=$k"
    exit 1
  fi
done
