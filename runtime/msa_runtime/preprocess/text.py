"""Text -> token ids and mask with the pack's tokenizer, bounded however long the text."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from msa_runtime.errors import PackError
from msa_runtime.limits import (
    MAX_CHARS_PER_TOKEN,
    MAX_SCAN_CHARS_PER_TOKEN,
    MAX_TOKENIZER_BYTES,
    read_bounded_text,
)
from msa_runtime.pack import TextPrep

_WHOLE, _CUT, _BUDGET = "whole", "cut", "budget"
"""How much of a text :meth:`TextEncoder._prefix_ids` tokenized: all of it; a prefix holding more
tokens than the pack keeps; the character budget, with fewer tokens than that."""


class TextEncoder:
    """Tokenisation with the pack's ``tokenizer.json``; cuts over-long text with a warning."""

    def __init__(self, path: str | Path, prep: TextPrep, *, json_text: str | None = None) -> None:
        from tokenizers import Tokenizer

        file = Path(path)
        if json_text is None:  # read here, bounded, so the tokenizer never opens a FIFO or a device
            json_text = read_bounded_text(
                file,
                MAX_TOKENIZER_BYTES,
                label=f"pack {file.parent}: {file.name}",
                error=PackError,
                fix="rebuild the pack",
            )
        try:
            self.tokenizer = Tokenizer.from_str(json_text)
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise PackError(f"cannot read tokenizer {path}: {exc}; rebuild the pack") from exc
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.prep = prep

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids [1, T], attention_mask [1, T])`` as int64.

        Long text is never tokenized whole: a prefix of ``max_tokens * MAX_CHARS_PER_TOKEN``
        characters, cut at a space, is tokenized first and doubled until it yields more than
        ``max_tokens`` tokens (or is the whole text), so a 10 MB transcript costs about as much
        as the tokens kept. Whole words stay whole, so the tokens kept are those of the full text.
        The prefix never grows past ``max_tokens * MAX_SCAN_CHARS_PER_TOKEN`` characters: text
        that is mostly spaces or words too long to split (base64, one long token) is cut there,
        with a warning, instead of being tokenized whole.
        """
        limit = self.prep.max_tokens
        ids, state = self._prefix_ids(text, limit)
        if len(ids) > limit:
            counted = f"{len(ids)} tokens" if state == _WHOLE else f"more than {limit} tokens"
            warnings.warn(
                f"text has {counted}; cut to the pack's limit of {limit}", UserWarning, stacklevel=3
            )
            ids = ids[: limit - 1] + ids[-1:]  # keep the closing [SEP]
        elif state == _BUDGET:
            budget = limit * MAX_SCAN_CHARS_PER_TOKEN
            warnings.warn(
                f"text has {len(text)} characters but its first {budget} give only {len(ids)} tokens "
                "(long runs of spaces or words too long to split): the rest is left out",
                UserWarning,
                stacklevel=3,
            )
        arr = np.asarray([ids], np.int64)
        return arr, np.ones_like(arr)

    def _prefix_ids(self, text: str, limit: int) -> tuple[list[int], str]:
        """Token ids of the shortest word-aligned prefix with more than ``limit`` tokens (the
        closing special token stays last), and how much of the text that prefix is."""
        chars = max(64, limit * MAX_CHARS_PER_TOKEN)
        budget = max(chars, limit * MAX_SCAN_CHARS_PER_TOKEN)
        while True:
            if chars >= len(text):
                return list(self.tokenizer.encode(text).ids), _WHOLE
            cut = chars
            while cut > chars // 2 and not text[cut].isspace():  # back up to a word boundary
                cut -= 1
            if cut == chars // 2:  # no space in the second half: cut inside a very long "word"
                cut = chars
            ids = list(self.tokenizer.encode(text[:cut]).ids)
            if len(ids) > limit + 1:
                return ids, _CUT
            if chars >= budget:
                return ids, _BUDGET
            chars = min(2 * chars, budget)
