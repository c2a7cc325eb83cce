"""Text from speech and from files: the recognizer (extra ``msa-edge[asr]``), its live form,
the scoring paths' speech-to-text step, and transcripts (.txt, .srt, .vtt) as timed cues.

- :mod:`~msa_runtime.asr.recognizer`: :class:`Recognizer` (Whisper on CTranslate2).
- :mod:`~msa_runtime.asr.live`: :class:`LiveTranscriber`, text that does not flicker.
- :mod:`~msa_runtime.asr.speech`: which model an Analyzer uses and when it runs.
- :mod:`~msa_runtime.asr.transcript`: :class:`Cue` and :func:`read_transcript`.

Importing this package does not need the ``asr`` extra; making a recognizer says when it is missing.
"""

from msa_runtime.asr.live import LiveTranscriber
from msa_runtime.asr.recognizer import Recognizer, Transcript, Word
from msa_runtime.asr.transcript import Cue, read_transcript

__all__ = [
    "Cue",
    "LiveTranscriber",
    "Recognizer",
    "Transcript",
    "Word",
    "read_transcript",
]
