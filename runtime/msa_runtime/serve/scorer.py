"""What the Triton python-backend step does with one request, without Triton.

:class:`ClipScorer` turns a request's inputs (``PATH``: a media file on the server, ``CLIP``: the
uploaded bytes of a clip, ``TEXT``: what was said) into the record ``msa-run`` prints. It holds an
:class:`msa_runtime.Analyzer` whose sessions are local ONNX Runtime sessions (form b, one
self-contained model) or :class:`TritonSession` proxies that send each encoder and the head to the
repository's ONNX Runtime models (form a, BLS). Every user error is an :class:`MsaError` with a
one-line message: the model returns it as that request's error and keeps serving.
"""

from __future__ import annotations

import math
import os
import posixpath
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from msa_runtime.analyzer import Analyzer, SessionFactory
from msa_runtime.engine.interface import PortInfo
from msa_runtime.errors import InputError, MediaError, MsaError, PackError
from msa_runtime.media import probe

DEFAULT_MAX_UPLOAD_MB = 64.0
MAX_PATH_CHARS = 1024
"""Longest ``PATH`` a request may give (characters)."""
MAX_STREAM_WINDOWS = 2000
"""Windows one ``msa_stream`` request may ask for (e.g. 4000 s at the default hop of 2 s): each
window is scored in turn by the model instance, which serves no other stream meanwhile."""
INPUTS = ("PATH", "CLIP", "TEXT")

Infer = Callable[[str, Mapping[str, np.ndarray], Sequence[str]], list[np.ndarray]]
"""``(model_name, feeds, output_names) -> outputs``: one inference on a Triton model (BLS inside
the server; tests pass ONNX Runtime sessions that check the model's config)."""


class TritonSession:
    """Looks like an ONNX Runtime session to :class:`Analyzer`, runs on a Triton model.

    ``max_batch`` is the model's ``max_batch_size``: inputs with more rows (frames of a long
    clip) are sent in chunks of at most that many and the outputs joined (0: sent whole)."""

    def __init__(self, infer: Infer, model: str, inputs: Sequence[str], max_batch: int = 0) -> None:
        self.infer, self.model, self.inputs, self.max_batch = infer, model, list(inputs), max_batch

    def get_inputs(self) -> list[PortInfo]:
        """The model's input names; their types and shapes are the server's model config's to
        check (the loader skips its own contract check for sessions from a factory)."""
        return [PortInfo(n, "", ()) for n in self.inputs]

    def get_outputs(self) -> list[PortInfo]:
        """Empty: the outputs are named per call (:meth:`run`) and declared by the model config."""
        return []

    def get_providers(self) -> list[str]:
        return [f"triton:{self.model}"]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        names = list(output_names or ["hidden"])
        rows = {len(v) for v in feeds.values()}
        if self.max_batch <= 0 or max(rows, default=0) <= self.max_batch:
            return self.infer(self.model, feeds, names)
        if len(rows) != 1:
            raise InputError(f"{self.model}: inputs disagree on the batch size ({sorted(rows)})")
        n = rows.pop()
        parts = [
            self.infer(self.model, {k: v[i : i + self.max_batch] for k, v in feeds.items()}, names)
            for i in range(0, n, self.max_batch)
        ]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]


def triton_factory(infer: Infer, models: Mapping[str, tuple[str, Sequence[str], int]]) -> SessionFactory:
    """A :data:`SessionFactory` that maps a pack file name to ``(model, input names, max batch)``."""

    def make(path: Path, providers: list[str], threads: int | None) -> TritonSession:
        if path.name not in models:
            raise PackError(f"{path.name} has no model in this Triton repository; rewrite it (msa-triton)")
        model, inputs, max_batch = models[path.name]
        return TritonSession(infer, model, inputs, max_batch)

    return make


def _text(value: Any) -> str | None:
    """A BYTES tensor element (or str) as text; empty means absent."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("TEXT and PATH must be UTF-8 text") from None
    text = str(value)
    return text if text.strip() else None


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.reshape(-1)[0] if value.dtype == object else value.tobytes()
    if isinstance(value, str):
        value = value.encode("latin-1")
    return bytes(value) or None


class ClipScorer:
    """Score one request: a clip by path (confined to ``input_root``; None refuses paths), by
    uploaded bytes (at most ``max_upload_mb``), and/or text."""

    def __init__(
        self,
        analyzer: Analyzer,
        *,
        input_root: str | os.PathLike[str] | None = None,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        digits: int | None = 4,
    ) -> None:
        if max_upload_mb <= 0:
            raise InputError(f"max upload must be > 0 MB, got {max_upload_mb}")
        self.analyzer = analyzer
        self.input_root = Path(input_root).resolve() if input_root else None
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.digits = digits

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], base: Path, session_factory: SessionFactory | None = None
    ) -> ClipScorer:
        """Build from a model config's ``parameters`` (``pack``, relative to ``base`` when not
        absolute; ``providers``, ``precision``, ``threads``, ``input_root``, ``max_upload_mb``)."""
        pack = Path(params.get("pack", "pack"))
        pack = pack if pack.is_absolute() else base / pack
        threads = int(params["threads"]) if params.get("threads") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an untrained head is reported in every record's notes
            analyzer = Analyzer(
                pack,
                providers=params.get("providers") or "cpu",
                precision=params.get("precision") or None,
                threads=threads,
                tuning=False,
                session_factory=session_factory,
            )
        analyzer.warm_up()  # OpenVINO's one-time setup before the first request, not during it
        return cls(
            analyzer,
            input_root=params.get("input_root") or None,
            max_upload_mb=float(params.get("max_upload_mb") or DEFAULT_MAX_UPLOAD_MB),
        )

    def resolve(self, path: str) -> Path:
        """A request's ``PATH``, which must lie under ``input_root``. Whether it is outside is
        decided from its text alone, before the file system is asked: every outside path gets the
        same answer, whatever exists there; inside, a missing file, a directory, a symlink loop or
        a symlink leading out all get the same "no such file"."""
        if self.input_root is None:
            raise InputError("this server takes no paths (start it with --input-root DIR): upload the clip")
        if "\0" in path or len(path) > MAX_PATH_CHARS:
            raise InputError(f"PATH must be at most {MAX_PATH_CHARS} characters without NUL bytes")
        lexical = posixpath.normpath(path)
        if posixpath.isabs(lexical) or lexical == ".." or lexical.startswith("../"):
            raise InputError(f"PATH {path!r} is outside the server's input root; give a path under it")
        missing = MediaError(f"PATH {path!r}: no such file under the server's input root")
        try:
            full = (self.input_root / lexical).resolve()
            found = full.is_relative_to(self.input_root) and full.is_file()
        except (
            OSError,
            RuntimeError,
            UnicodeError,
        ):  # a loop (RuntimeError before 3.13), a long or unencodable name
            raise missing from None
        if not found:
            raise missing
        return full

    def _scrub(self, exc: MsaError, upload: Path | None = None) -> MsaError:
        """The error with the server's own paths (the input root, an upload's temporary file)
        replaced by what the client gave: a message never shows where the server keeps files."""
        text = str(exc)
        if upload is not None:
            text = text.replace(str(upload), "the uploaded CLIP")
        if self.input_root is not None:
            text = text.replace(str(self.input_root) + os.sep, "").replace(
                str(self.input_root), "the input root"
            )
        return type(exc)(text)

    def _inputs(self, path: Any, clip: Any, text: Any) -> tuple[str | None, bytes | None, str | None]:
        where, data, words = _text(path), _bytes(clip), _text(text)
        if where is not None and data is not None:
            raise InputError("give PATH or CLIP, not both")
        if data is not None and len(data) > self.max_bytes:
            raise InputError(
                f"CLIP is {len(data) / 2**20:.1f} MB, over this server's upload limit of "
                f"{self.max_bytes / 2**20:.1f} MB: send a shorter clip or raise --max-upload-mb"
            )
        if where is None and data is None and words is None:
            raise InputError("empty request: give PATH, CLIP or TEXT")
        return where, data, words

    def score(self, path: Any = None, clip: Any = None, text: Any = None) -> dict[str, Any]:
        """The record of one request (``Prediction.to_dict``); raises :class:`MsaError`."""
        where, data, words = self._inputs(path, clip, text)
        with self._source(where, data) as source:
            return self.analyzer.predict(source, text=words).to_dict(self.digits)

    def stream(
        self, path: Any = None, clip: Any = None, text: Any = None, window: Any = None, hop: Any = None
    ) -> Generator[dict[str, Any], None, None]:
        """The records of the windows of a clip (``Analyzer.stream``), each as it is scored:
        ``window``/``hop`` in seconds (default 6 and 2), at most :data:`MAX_STREAM_WINDOWS`.
        Closing the iterator stops the work (a cancelled request)."""
        where, data, words = self._inputs(path, clip, text)
        w, h = _seconds(window, 6.0, "WINDOW"), _seconds(hop, 2.0, "HOP")
        with self._source(where, data) as source:
            if source is None:
                raise InputError("streaming needs a clip: give PATH or CLIP (and TEXT if you have it)")
            _check_windows(source, w, h)
            windows = self.analyzer.stream(source, text=words, window=w, hop=h)
            for n, p in enumerate(windows, 1):
                if n > MAX_STREAM_WINDOWS:  # the clip states a shorter duration than it has
                    raise InputError(
                        f"this stream passed {MAX_STREAM_WINDOWS} windows, the most one request gets"
                    )
                yield p.to_dict(self.digits)

    @contextmanager
    def _source(self, where: str | None, data: bytes | None) -> Iterator[Path | None]:
        """The clip to score (the resolved PATH, the upload as a private temporary file, or
        None); errors raised inside come out with the server's paths scrubbed."""
        file = None
        try:
            if data is None:
                yield None if where is None else self.resolve(where)
            else:
                with _upload(data) as file:
                    yield file
        except MsaError as exc:
            raise self._scrub(exc, file) from exc


def _check_windows(source: Path, window: float, hop: float) -> None:
    """Refuse a stream whose clip, by its stated duration, has more windows than one request gets."""
    duration = probe(source).duration
    if duration is None or duration <= window:
        return
    count = 1 + math.floor((duration - window) / hop + 1e-9)
    if count > MAX_STREAM_WINDOWS:
        least = math.ceil((duration - window) / (MAX_STREAM_WINDOWS - 1) * 100) / 100
        raise InputError(
            f"WINDOW {window:g} s and HOP {hop:g} s make {count} windows of this {duration:.0f} s clip, "
            f"over the {MAX_STREAM_WINDOWS} one request gets: use HOP {least:g} or more, or a shorter clip"
        )


def _seconds(value: Any, default: float, name: str) -> float:
    """A WINDOW or HOP input in seconds: an FP32 tensor's element read as the decimal the client
    wrote (FP32 0.01 is 0.009999999776, under the minimum hop of 0.01)."""
    if value is None or (isinstance(value, np.ndarray) and value.size == 0):
        return default
    element = np.asarray(value).reshape(-1)[0]
    x = float(str(element)) if isinstance(element, np.float32) else float(element)
    if not math.isfinite(x) or x <= 0:
        raise InputError(f"{name} must be a finite number of seconds > 0, got {x:g}")
    return x


@contextmanager
def _upload(data: bytes) -> Iterator[Path]:
    """The uploaded bytes as a private temporary file; its name never reaches the client."""
    with tempfile.TemporaryDirectory(prefix="msa-clip-") as tmp:
        file = Path(tmp) / "upload"
        file.write_bytes(data)
        yield file
