#!/usr/bin/env bash
# The whole CPU test suite (what CI runs): lint, build and release config, unit tests, Triton
# interpreter tests, the SM12x Triton compile gate and the nvcc gate.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh || exit 1
PY=.venv/bin/python
failed=()
run() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then echo "=== $name: ok ($((SECONDS - t0))s)"; else echo "=== $name: FAILED ($((SECONDS - t0))s)"; failed+=("$name"); fi
}
run lint .venv/bin/ruff check torch-ext tests tools benchmarks examples
run build-config $PY tools/check_build_config.py
run release-config $PY tools/check_release.py
run unit $PY -m pytest -q -p no:cacheprovider
run interpreter env TRITON_INTERPRET=1 $PY -m pytest -q -p no:cacheprovider -m triton
run sm12x-gate $PY tools/sm12x_gate.py
run nvcc-gate $PY tools/nvcc_gate.py
if [ ${#failed[@]} -ne 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all gates passed"
