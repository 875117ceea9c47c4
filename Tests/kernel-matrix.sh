#!/usr/bin/env bash
# The numeric suites (ops, layers, optimizer, golden models) once more under each GEMM kernel
# family this CPU can execute, beside the native choice `swift test` already ran: each OpenBLAS
# family (which then also runs the small blocks), OpenBLAS alone (MIMSERVE_SGEMM=openblas, no
# oneDNN sgemm for the large blocks), and oneDNN held to AVX2 on an AVX-512 machine. A tolerance
# that holds for one kernel only fails here on any machine. Then once with released buffers
# filled with NaN (MIMSERVE_POISON_RELEASED=1): a kernel reading a tensor's memory after the
# tensor went away, or a fresh buffer before writing it, fails instead of reading stale values.
# Reuses the release test build.
set -euo pipefail
SWIFT=${SWIFT:-swift}
FILTER='TensorCoreTests|NNTests|OptimTests|ModelsTests'
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo "kernel matrix: this machine sets OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, which the main run used; nothing else to run"
  exit 0
fi
has() { for flag in "$@"; do grep -qw "$flag" /proc/cpuinfo || return 1; done; }
runs=()
has avx2 fma && runs+=("OPENBLAS_CORETYPE=Haswell")
if has avx512f avx512cd avx512bw avx512dq avx512vl; then
  runs+=("OPENBLAS_CORETYPE=SkylakeX" "DNNL_MAX_CPU_ISA=AVX2")
fi
runs+=("MIMSERVE_SGEMM=openblas" "MIMSERVE_POISON_RELEASED=1")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for setting in "${runs[@]}"; do
  if env "$setting" "$SWIFT" test -c release -Xswiftc -enable-testing --skip-build --filter "$FILTER" >"$log" 2>&1; then
    echo "kernel matrix: $setting"
    grep -E '^(mae|simmim|ummae|greenmim|mixmae|convmae|hf_vitmae)_tiny: |Test run with' "$log" | sed 's/^/  /'
  else
    cat "$log"
    echo "kernel matrix: FAILED under $setting"
    exit 1
  fi
done
