"""Media in: decoding with PyAV, probing, standard input, the time grids frames and audio are
sampled on, and audio resampling.

- :mod:`~msa_runtime.media.decoding`: :func:`decode` a whole clip, :func:`iter_media` a long file or
  a live source in pieces, :func:`iter_pcm` raw PCM.
- :mod:`~msa_runtime.media.probe`: opening a file with one-line errors; what it holds.
- :mod:`~msa_runtime.media.stdin`: media piped on standard input.
- :mod:`~msa_runtime.media.records`: raw PCM and JPEG frames from devices (``pcm+jpeg``).
- :mod:`~msa_runtime.media.timeline`: decoded frames onto fixed time grids.
- :mod:`~msa_runtime.media.resample`: arrays at another sample rate.

Imports only :mod:`msa_runtime.errors` and :mod:`msa_runtime.limits` of the runtime.
"""

from msa_runtime.media.decoding import Decoded, decode, iter_media, iter_pcm
from msa_runtime.media.probe import MediaInfo, Opened, open_file, probe
from msa_runtime.media.records import FORMAT as RECORDS
from msa_runtime.media.records import JpegEncoder, audio_record, frame_record, iter_records
from msa_runtime.media.resample import resample_audio
from msa_runtime.media.timeline import AudioChunk, Frame

__all__ = [
    "AudioChunk",
    "Frame",
    "Opened",
    "JpegEncoder",
    "RECORDS",
    "audio_record",
    "frame_record",
    "iter_records",
    "open_file",
    "Decoded",
    "MediaInfo",
    "decode",
    "iter_media",
    "iter_pcm",
    "probe",
    "resample_audio",
]
