"""Test stand-in (python backend) for an ``onnxruntime_onnx`` model of msa-triton's form a: runs the
model's own ``model.onnx`` with ONNX Runtime and keeps its config's inputs, outputs and
max_batch_size, so the form's BLS step can run on the PyPI Triton, which has no ONNX Runtime
backend. Copied into the repository by ``tests/test_serve_server.py``; not part of msa-edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            names = list(request.requested_output_names()) or self.outputs
            values = self.session.run(names, feeds)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in zip(names, values)])
            )
        return responses
