#!/usr/bin/env bash
# The main job: the end-to-end MSA demo (scores -> top-k -> CSR -> sparse prefill -> decode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python examples/msa_demo.py "$@"
