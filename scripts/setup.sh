#!/usr/bin/env bash
# Create .venv and install msa-edge with the runtime (CPU), OpenVINO, export, test, asr, ray and docs extras.
# Idempotent: a second run only checks. Torch comes first, pinned to releases this machine kind
# carries on disk (a plain `torch` would download a multi-GB CUDA build). Without a GPU the
# default is torch 2.13.0's CPU-only wheel (.venv 2.9 GB; 93 s here with pip's cache warm); with one (nvidia-smi
# lists it) torch 2.14.1 with torchvision 0.29.1 (a CUDA build, .venv 7.4 GB). MSA_EDGE_TORCH=2.14.1
# forces the latter on any machine: torchvision lets the tests compare the face detector with
# facenet-pytorch's own MTCNN (skipped, with the reason, on 2.13.0; CI sets it for that).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  DEFAULT_TORCH=2.13.0
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DEFAULT_TORCH=2.14.1; fi
  TORCH=${MSA_EDGE_TORCH:-$DEFAULT_TORCH}
  VISION=""
  [ "$TORCH" = "2.14.1" ] && VISION="torchvision==0.29.1"
  echo "setup: installing torch $TORCH $VISION (local wheels)" >&2
  pip install -q --disable-pip-version-check "torch==$TORCH" $VISION
fi
# openvino: OpenVINO's own runtime (~180 MB) and ONNX Runtime's plugin (~160 MB, beside
# onnxruntime); export brings NNCF for the pack's ov-int8 files. None replaces onnxruntime or torch.
echo "setup: installing msa-edge[cpu,openvino,export,test,speech-test,asr,ray,docs,live,plot]" >&2
pip install -q --disable-pip-version-check -e ".[cpu,openvino,export,test,speech-test,asr,ray,docs,live,plot]"
# The face detector's weights (MTCNN, for face-crop presets) ship in facenet-pytorch, whose metadata
# pins an old torch: install it without dependencies, plus the two it imports.
if ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('facenet_pytorch') is None)"; then
  echo "setup: installing facenet-pytorch (--no-deps) for the face detector" >&2
  pip install -q --disable-pip-version-check --no-deps facenet-pytorch
fi
pip install -q --disable-pip-version-check requests tqdm
python -c "import msa_runtime, msa_export, onnxruntime, torch, nncf, openvino, onnxruntime_ep_openvino; print('setup: ok, torch', torch.__version__, 'onnxruntime', onnxruntime.__version__, 'nncf', nncf.__version__)" >&2
