"""The python-backend model of a Triton repository (copied there as ``1/model.py``).

Runs inside Triton's python stub, never imported by the runtime. Inputs (all optional, one
element each, BYTES): ``PATH`` (a media file under the server's input root), ``CLIP`` (the bytes of
an uploaded clip), ``TEXT``. Outputs: ``SCORE`` (FP32 [1]) and ``RESULT`` (the JSON record that
``msa-run`` prints). A bad request gets its own error; the model keeps serving. With
``model_transaction_policy { decoupled: true }`` (the model ``msa_stream``) a request (a clip by
PATH or CLIP, TEXT, optional WINDOW and HOP in seconds) gets one response per window of
``Analyzer.stream``, sent as each is scored, then an empty final response.

The config's ``parameters`` choose the mode: ``local`` (form b: the pack's encoders and head run
here on ONNX Runtime) or ``bls`` (form a: decoding, preprocessing and pooling run here, the
encoders and the head on the repository's ``onnxruntime_onnx`` models through BLS requests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from msa_runtime.errors import MsaError, ProviderError
from msa_runtime.serve.scorer import INPUTS, ClipScorer, triton_factory


def _bls_infer(model: str, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=list(names),
        inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in feeds.items()],
    )
    response = request.exec()
    if response.has_error():
        raise ProviderError(f"Triton model {model} failed: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in names]


def _inputs(request: Any, names: Sequence[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        out[name.lower()] = None if tensor is None else tensor.as_numpy()
    return out


def _outputs(record: dict[str, Any]) -> list[Any]:
    return [
        pb_utils.Tensor("SCORE", np.asarray([record["score"]], np.float32)),
        pb_utils.Tensor("RESULT", np.asarray([json.dumps(record).encode()], dtype=np.object_)),
    ]


def _error(exc: Exception, logger: Any, model: str) -> Any:
    """The error a request gets: a user's mistake (:class:`MsaError`) is INVALID_ARG (HTTP 400,
    gRPC INVALID_ARGUMENT) with its one-line message; anything else is a bug of the server, logged
    here in full and answered without details (they may hold the server's paths)."""
    if isinstance(exc, MsaError):
        return pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
    logger.log_error(f"{model}: unexpected {type(exc).__name__}: {exc}")
    return pb_utils.TritonError(f"internal error of the server ({type(exc).__name__}); see its log")


class TritonPythonModel:
    """Triton's python-backend entry points."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        base = Path(args["model_repository"]) / args["model_version"]
        factory = None
        if params.get("mode") == "bls":
            models = {f: (m, i, int(b)) for f, (m, i, b) in json.loads(params["models"]).items()}
            factory = triton_factory(_bls_infer, models)
        self.scorer = ClipScorer.from_params(params, base, factory)
        self.logger = pb_utils.Logger
        self.name = str(config.get("name", "msa"))
        self.decoupled = bool(pb_utils.using_decoupled_model_transaction_policy(config))

    def execute(self, requests: list[Any]) -> list[Any] | None:
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        responses = []
        for request in requests:
            try:
                record = self.scorer.score(**_inputs(request, INPUTS))
            except Exception as exc:  # answered as this request's error (_error); the model serves on
                responses.append(pb_utils.InferenceResponse(error=_error(exc, self.logger, self.name)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=_outputs(record)))
        return responses

    def _stream(self, request: Any) -> None:
        """Decoupled: one response per window as it is scored, then the final flag. A request
        whose client went away (Triton cancels it) stops at the next window."""
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        windows = self.scorer.stream(**_inputs(request, (*INPUTS, "WINDOW", "HOP")))
        try:
            for record in windows:
                if request.is_cancelled():
                    self.logger.log_info(f"{self.name}: request cancelled by its client; stopped")
                    sender.send(flags=final)
                    return
                sender.send(pb_utils.InferenceResponse(output_tensors=_outputs(record)))
        except Exception as exc:  # answered as this stream's error (_error); the model serves on
            sender.send(pb_utils.InferenceResponse(error=_error(exc, self.logger, self.name)), flags=final)
            return
        finally:
            windows.close()  # ends the analyzer's stream and removes an upload's temporary file
        sender.send(flags=final)

    def finalize(self) -> None:
        self.scorer.analyzer.close()
