"""The inputs and outputs each ONNX file of a pack must have, checked when its session loads.

The manifest says which file is which encoder and what it was exported with (hidden size, image
size); the file's own graph says what it takes and gives. A file that does not match (files
swapped between modalities, a head from another pack) fails at load with a
:class:`~msa_runtime.errors.PackError` naming the file, not later per input.

Per modality (the names ``msa_export.models.encoders`` exports): text ``input_ids`` and
``attention_mask`` (int64, ``[batch, tokens]``) -> ``hidden`` ``[batch, tokens, D]``; audio
``waveform`` (float, ``[batch, samples]``) -> ``hidden`` ``[batch, steps, D]``; vision
``pixel_values`` (float, ``[frames, 3, S, S]``, ``S`` the image size) -> ``hidden``
``[frames, D]`` (or ``[frames, steps, D]``); ``D`` is the encoder's ``hidden_size``. The head:
``{mod}`` ``[batch, T, D_mod]`` and ``{mod}_mask`` per head modality, ``present``
``[batch, modalities]`` -> ``score`` and ``gates``. Dimensions the graph leaves symbolic are not
checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from msa_runtime.errors import PackError
from msa_runtime.pack import EncoderEntry, HeadEntry, VisionPrep


@dataclass(frozen=True)
class Port:
    """One expected input or output: its name, element type (None: any), rank(s) and the
    dimensions that must have a given size (index -> size)."""

    name: str
    dtype: str | None
    ranks: tuple[int, ...]
    dims: tuple[tuple[int, int], ...] = ()


def encoder_ports(entry: EncoderEntry) -> tuple[list[Port], list[Port]]:
    """What an encoder file of ``entry`` must take and give."""
    d = entry.hidden_size
    if entry.modality == "text":
        ins = [Port("input_ids", "tensor(int64)", (2,)), Port("attention_mask", "tensor(int64)", (2,))]
        return ins, [Port("hidden", None, (3,), ((-1, d),))]
    if entry.modality == "audio":
        return [Port("waveform", None, (2,))], [Port("hidden", None, (3,), ((-1, d),))]
    size = entry.prep.image_size if isinstance(entry.prep, VisionPrep) else 0
    pixels = Port("pixel_values", None, (4,), ((1, 3), (2, size), (3, size)))
    return [pixels], [Port("hidden", None, (2, 3), ((-1, d),))]


def head_ports(head: HeadEntry, encoders: dict[str, EncoderEntry]) -> tuple[list[Port], list[Port]]:
    """What the head file may take (a graph may leave out inputs it does not use) and must give."""
    ins = []
    for mod in head.modalities:
        width = ((-1, encoders[mod].hidden_size),) if mod in encoders else ()
        ins += [Port(mod, None, (3,), width), Port(f"{mod}_mask", None, (2,))]
    ins.append(Port("present", None, (2,), ((1, len(head.modalities)),)))
    return ins, [Port("score", None, (1, 2)), Port("gates", None, (1, 2))]


def _shape(arg: Any) -> list[Any]:
    shape = getattr(arg, "shape", None)
    return list(shape) if isinstance(shape, list | tuple) else []


def _problems(args: list[Any], ports: list[Port], kind: str, *, all_required: bool) -> list[str]:
    got = {a.name: a for a in args}
    wanted = {p.name: p for p in ports}
    out = []
    unknown = sorted(set(got) - set(wanted))
    missing = sorted(set(wanted) - set(got)) if all_required else []
    if unknown or missing:
        out.append(f"{kind}s {sorted(got)}, expected {sorted(wanted)}")
        return out
    for name, arg in got.items():
        port = wanted[name]
        shape = _shape(arg)
        if port.dtype is not None and getattr(arg, "type", port.dtype) != port.dtype:
            out.append(f"{kind} {name} is {arg.type}, expected {port.dtype}")
        if shape and len(shape) not in port.ranks:
            out.append(f"{kind} {name} has shape {shape}, expected rank {' or '.join(map(str, port.ranks))}")
            continue
        for index, size in port.dims:
            dim = shape[index] if shape and -len(shape) <= index < len(shape) else None
            if isinstance(dim, int) and dim > 0 and size > 0 and dim != size:
                out.append(
                    f"{kind} {name} has shape {shape}: dimension {index} is {dim}, the manifest says {size}"
                )
    return out


def check_session(
    session: Any, file: str, role: str, ports: tuple[list[Port], list[Port]], *, head: bool = False
) -> None:
    """Raise a :class:`PackError` naming ``file`` when ``session``'s inputs or outputs do not
    match ``ports`` (inputs of a head may be a subset; outputs may include more)."""
    ins, outs = ports
    problems = _problems(list(session.get_inputs()), ins, "input", all_required=not head)
    declared = {o.name: o for o in session.get_outputs()}
    absent = [p.name for p in outs if p.name not in declared]
    if absent:
        problems.append(f"outputs {sorted(declared)}, expected {sorted(p.name for p in outs)}")
    else:
        problems += _problems([declared[p.name] for p in outs], outs, "output", all_required=True)
    if problems:
        raise PackError(
            f"{file} is not the pack's {role}: {'; '.join(problems)} (files swapped or from another "
            "pack?); rebuild or re-copy the pack"
        )


def check_encoder(session: Any, file: str, entry: EncoderEntry) -> None:
    """Check an encoder session against its manifest entry (see the module doc)."""
    check_session(session, file, f"{entry.modality} encoder", encoder_ports(entry))


def check_head(session: Any, file: str, head: HeadEntry, encoders: dict[str, EncoderEntry]) -> None:
    """Check the head session against the manifest's head and encoders."""
    check_session(session, file, "fusion head", head_ports(head, encoders), head=True)
