#!/usr/bin/env bash
# Create .venv-serve: msa-edge[cpu,serve] and what its tests need. The serve extra gets its own
# environment because nvidia-pytriton forces numpy < 2 (the main .venv has numpy 2); it needs no
# torch (the tests take a pack built by .venv: MSA_EDGE_TINY_PACK). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-serve/bin/python ] || "$PY" -m venv .venv-serve
echo "setup-serve: installing msa-edge[cpu,serve] into .venv-serve" >&2
.venv-serve/bin/pip install -q --disable-pip-version-check -e ".[cpu,serve]" "pytest>=8" "pytest-benchmark>=4" "psutil>=5.9" "hypothesis>=6.100"
.venv-serve/bin/python -c "import pytriton, tritonclient.grpc, numpy, onnxruntime, msa_runtime.serve; print('setup-serve: ok, numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)" >&2
