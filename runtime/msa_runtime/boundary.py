"""The API boundary: every exception leaving a public :class:`~msa_runtime.Analyzer` method is
an :class:`~msa_runtime.MsaError`.

Checks inside the runtime raise typed errors where they know the cause; whatever still escapes
from a dependency (PyAV/FFmpeg, ONNX Runtime, numpy, tokenizers) or from a bug is translated here,
once, by :func:`public` (a decorator) and :func:`translate`:

=======================================  ==================================================
PyAV / FFmpeg errors                     :class:`MediaError`
ONNX Runtime errors                      :class:`ProviderError`
``TypeError`` / ``ValueError``           :class:`InputError` (an argument the checks missed)
``MemoryError``                          :class:`InputError` (the input is too large)
anything else                            :class:`MsaError` ("unexpected ...: please report it")
=======================================  ==================================================

The original exception stays attached as ``__cause__``. ``KeyboardInterrupt``, ``SystemExit``
and ``GeneratorExit`` pass through untouched. Iterators a public method returns (``stream``) are
wrapped so their ``next()`` translates too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from msa_runtime.errors import InputError, MediaError, MsaError, ProviderError

F = TypeVar("F", bound=Callable[..., Any])


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text[:300] + ("..." if len(text) > 300 else "")


def translate(exc: Exception, where: str) -> MsaError:
    """The :class:`MsaError` that stands for ``exc``, raised inside ``where`` (a method name)."""
    if isinstance(exc, MsaError):
        return exc
    module = type(exc).__module__ or ""
    detail = _first_line(exc) or type(exc).__name__
    if module.startswith("av.") or module == "av":
        return MediaError(f"{where}: the media could not be decoded ({detail}): check the file or source")
    if module.startswith("onnxruntime"):
        return ProviderError(
            f"{where}: ONNX Runtime failed ({type(exc).__name__}: {detail}): check the pack and "
            "the provider (msa-run --providers cpu)"
        )
    if isinstance(exc, MemoryError):
        return InputError(f"{where}: out of memory: the input is too large for this machine")
    if isinstance(exc, (TypeError, ValueError)):
        return InputError(
            f"{where}: invalid argument ({type(exc).__name__}: {detail}); if the arguments "
            "look right, please report it"
        )
    return MsaError(f"{where}: unexpected {type(exc).__name__}: {detail} (please report it)")


def _translated(it: Iterator[Any], where: str) -> Iterator[Any]:
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as exc:
                err = translate(exc, where)
                if err is exc:
                    raise
                raise err from exc
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def public(func: F) -> F:
    """Decorate a public method: its exceptions (and those of an iterator it returns) become
    :class:`MsaError` s through :func:`translate`."""
    where = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            err = translate(exc, where)
            if err is exc:
                raise
            raise err from exc
        if isinstance(result, Iterator):
            return _translated(result, where)
        return result

    return cast(F, wrapper)
