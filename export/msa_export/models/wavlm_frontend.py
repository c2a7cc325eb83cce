"""WavLM's convolutional front end rewritten as strided slices + MatMul, so dynamic int8 covers it.

WavLM (like wav2vec 2.0 and HuBERT) turns the waveform into 50 frames/s with seven 1-D
convolutions (512 channels; kernel 10 stride 5, four of kernel 3 stride 2, two of kernel 2
stride 2). Exported as ``Conv`` nodes they stay fp32 in the pack's int8 file: ONNX Runtime's
``ConvInteger`` is slower than fp32 here (WavLM-base cut at 6 blocks, 5 s: 370 against 155 ms),
so the quantizer leaves Conv alone, and the
front end is 32-51% of the int8 audio encoder's time.

A 1-D convolution with kernel ``k``, stride ``s``, no padding, is a MatMul: output frame ``t`` is
``sum_j W[:, :, j] @ x[s*t + j]``, i.e. the concatenation ``[x[s*t], ..., x[s*t + k - 1]]``
(``k * C_in`` values) times the weight reshaped to ``(k * C_in, C_out)``; with the input viewed
as frames of ``s`` steps this needs no im2col copy (:class:`StridedMatMul`).
:class:`MatMulFeatureEncoder` computes the front end that way, time-major
(``[batch, frames, channels]``, so the layer norms need no transposes), with the same norms and
activations; the dynamic quantizer then makes the MatMuls int8 like the transformer's. The
arithmetic is the same up to fp32 summation order; the pack's parity gate
(:mod:`msa_export.convert.onnx_file`) checks every file against PyTorch's original model.

The first layer (one input channel, ``k = 10``) sees the raw waveform. With a group norm (over
time, per channel: base / Base+) it stays the original Conv, fastest channel-major; with a layer
norm (WavLM Large) it is a MatMul too (``k = 2 s``), so the whole front end is time-major (no
transposes around that layer's norm): on OpenVINO, 6 s window, the front end 45 -> 30 ms, the cut
WavLM Large 233 -> 214 ms (``benchmarks/bench_audio.py --openvino-only``). The other six layers
are always MatMuls.

What packs use (:mod:`msa_export.pack.encoder`): for a layer-norm front end (WavLM Large,
:func:`matmul_frontend_pays`) the fp32 file carries the MatMul form, which OpenVINO runs 2.8x
faster than the Conv form; the int8 and fp16 files are made from a Conv export, and the ov-int8
file keeps the front-end MatMuls out of quantization (:data:`FRONTEND_NODES`): in int8 they cost
parity (mean cosine 0.9957 on WavLM Base+, below the 0.999 gate; ``benchmarks/bench_audio.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class StridedMatMul(nn.Module):
    """``nn.Conv1d`` (no padding, dilation or groups; kernel ``k`` = stride ``s``, ``s + 1`` or
    ``2 s``) on time-major input ``[B, T, C_in]`` -> ``[B, L, C_out]``, ``L = (T - k) // s + 1``.

    The input is viewed as frames of ``s`` steps (a reshape): ``f[t] = x[s*t : s*t+s]``. Output
    ``t`` needs ``x[s*t : s*t+k]``: ``f[t]`` and, when ``k = s + 1``, ``x[s*t + s]``; so it is
    ``f[t] @ A + x[s*t + s] @ B`` with ``A``, ``B`` the kernel's first ``s`` taps and its last:
    one or two big MatMuls. When ``k = 2 s`` (WavLM's first layer: kernel 10, stride 5, one
    channel) it is ``[f[t], f[t + 1]] @ W``: one MatMul on neighbouring frames side by side.
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.padding not in ((0,), 0) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError("only unpadded, undilated, ungrouped Conv1d layers can be rewritten")
        self.kernel, self.stride = int(conv.kernel_size[0]), int(conv.stride[0])
        if self.kernel not in (self.stride, self.stride + 1, 2 * self.stride):
            raise ValueError(
                f"kernel {self.kernel} with stride {self.stride}: only kernel = "
                "stride, stride + 1 or 2 x stride is supported (WavLM's layers)"
            )
        weight = conv.weight.detach()  # [C_out, C_in, k]
        c_out, c_in, _ = weight.shape
        self.channels = c_in

        def taps(w: torch.Tensor) -> nn.Parameter:  # [C_out, C_in, n] -> [n * C_in, C_out]
            return nn.Parameter(w.permute(2, 1, 0).reshape(-1, c_out).contiguous(), requires_grad=False)

        self.pair = self.kernel == 2 * self.stride
        split = self.kernel if self.pair else self.stride
        self.head = taps(weight[:, :, :split])
        self.tail = taps(weight[:, :, split:]) if self.kernel > split else None
        self.bias = (
            nn.Parameter(conv.bias.detach().clone(), requires_grad=False) if conv.bias is not None else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, k, c = self.stride, self.kernel, self.channels
        length = (x.shape[1] - k) // s + 1
        if self.pair:  # k = 2 s: [f[t], f[t + 1]] for t < length, and (length + 1) * s <= T
            f = x[:, : (length + 1) * s].reshape(x.shape[0], length + 1, s * c)
            out = torch.matmul(torch.cat([f[:, :-1], f[:, 1:]], dim=2), self.head)
            return out + self.bias if self.bias is not None else out
        f = x[:, : length * s].reshape(x.shape[0], length, s * c)  # f[t] = x[s*t : s*t + s]
        out = torch.matmul(f, self.head)
        if self.tail is not None:
            nxt = x[:, s : s * length + 1 : s]  # x[s*t + s]: one strided slice of whole rows
            out = out + torch.matmul(nxt, self.tail)
        return out + self.bias if self.bias is not None else out


class _Layer(nn.Module):
    """Conv -> norm -> activation of one front-end layer, time-major."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self.conv: nn.Module = StridedMatMul(layer.conv)
        norm = getattr(layer, "layer_norm", None)
        self.norm: nn.Module
        if norm is None:
            self.norm = nn.Identity()
        elif isinstance(norm, nn.LayerNorm):
            self.norm = norm  # over channels: the last axis, time-major
        else:
            raise ValueError(f"unknown front-end norm {type(norm).__name__}")
        self.activation = layer.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class MatMulFeatureEncoder(nn.Module):
    """Drop-in for a WavLM / wav2vec 2.0 ``feature_extractor``: ``[B, samples]`` -> ``[B, C, L]``
    (the original's layout), computed time-major with :class:`StridedMatMul` layers."""

    def __init__(self, encoder: Any, first_as_matmul: bool = True) -> None:
        super().__init__()
        first, *rest = list(encoder.conv_layers)
        # a group-norm first layer (a per-channel norm over time, fastest channel-major) stays a
        # Conv; a layer-norm one becomes a MatMul too, so no transposes surround its norm. They
        # are named frontend_conv0..6 so the int8 quantizers can tell them apart.
        layer_norm = isinstance(getattr(first, "layer_norm", None), nn.LayerNorm)
        self.time_major_first = first_as_matmul and layer_norm
        self.frontend_conv0 = _Layer(first) if self.time_major_first else first
        for i, layer in enumerate(rest, start=1):
            self.add_module(f"frontend_conv{i}", _Layer(layer))
        self.count = 1 + len(rest)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if self.time_major_first:
            x = self.frontend_conv0(input_values[:, :, None])
        else:
            x = self.frontend_conv0(input_values[:, None]).transpose(1, 2)
        for i in range(1, self.count):
            x = getattr(self, f"frontend_conv{i}")(x)
        return x.transpose(1, 2)


#: Node names of the rewritten front end (int8 files keep them fp32: see the module docstring).
FRONTEND_NODES = r"frontend_conv\d"


def matmul_frontend_pays(model: nn.Module) -> bool:
    """Whether a pack's fp32 file should carry the MatMul front end: WavLM-style models whose
    conv stack has a layer norm after every layer (``feat_extract_norm = "layer"``, WavLM Large).
    Each of those norms costs two transposes in the Conv form (channel-major convs, a norm over
    channels); time-major MatMuls need none. Measured on OpenVINO (bf16, 6 s window, 2 threads):
    the WavLM Large front end 207 -> 73 ms, the cut audio encoder 484 -> 338 ms; the group-norm
    front end (base / Base+) gains nothing (64 -> 60 ms), nor does the CPU EP's fp32."""
    encoder = getattr(model, "feature_extractor", None)
    config = getattr(model, "config", None)
    return (
        encoder is not None
        and hasattr(encoder, "conv_layers")
        and getattr(config, "feat_extract_norm", None) == "layer"
    )


def rewrite_frontend(model: nn.Module) -> nn.Module:
    """Replace ``model.feature_extractor`` (a WavLM-style conv stack) by
    :class:`MatMulFeatureEncoder`, in place; returns the model. Other models are returned as
    they are."""
    encoder = getattr(model, "feature_extractor", None)
    if encoder is None or not hasattr(encoder, "conv_layers"):
        return model
    model.feature_extractor = MatMulFeatureEncoder(encoder)
    return model


class _Smoothed(nn.Module):
    """A :class:`StridedMatMul` whose input is divided per channel by ``s`` and whose weights
    are multiplied by it (SmoothQuant): the same function in fp32, an activation with flatter
    channels for int8's one scale per tensor."""

    def __init__(self, mm: StridedMatMul, amax: torch.Tensor, alpha: float) -> None:
        super().__init__()
        c = mm.channels
        taps = mm.head.shape[0] // c
        w = mm.head.detach().view(taps, c, -1).abs().amax(dim=(0, 2))
        if mm.tail is not None:
            w = torch.maximum(w, mm.tail.detach().abs().amax(dim=1))
        s = (amax.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        self.inverse = nn.Parameter(1.0 / s, requires_grad=False)
        mm.head.data = mm.head.data * s.repeat(taps)[:, None]
        if mm.tail is not None:
            mm.tail.data = mm.tail.data * s[:, None]
        self.mm = mm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(x * self.inverse)


@torch.no_grad()
def smooth_frontend(model: nn.Module, inputs: list[torch.Tensor], alpha: float = 0.5) -> nn.Module:
    """SmoothQuant the rewritten front end of ``model`` in place, calibrated on ``inputs``
    (waveforms): per-channel activation maxima of each MatMul's input set the scales."""
    layers = [m for m in model.modules() if isinstance(m, _Layer)]
    amax: dict[int, torch.Tensor] = {}

    def hook(index: int) -> Any:
        def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            a = args[0].detach().abs().amax(dim=(0, 1))
            amax[index] = torch.maximum(amax[index], a) if index in amax else a

        return record

    handles = [layer.conv.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        for x in inputs:
            model(x)
    finally:
        for h in handles:
            h.remove()
    for i, layer in enumerate(layers):
        if isinstance(layer.conv, StridedMatMul):
            layer.conv = _Smoothed(layer.conv, amax[i], alpha)
    return model
