"""msa_runtime.live: live sessions over WebSocket (extra ``msa-edge[live]``: starlette, uvicorn,
websockets).

- :class:`LiveServer` serves a pack: a WebSocket session per client that sends media as it is
  recorded (a browser's ``MediaRecorder`` WebM chunks, Matroska, or raw PCM) and gets one
  message per window as :meth:`msa_runtime.Analyzer.stream` computes it; a demo page at ``/``.
- :func:`stream_records` is the Python client (``msa-run --connect URL FILE``).
- :class:`LiveLimits`: sessions at once, byte rate, buffer, idle time, queue of windows.

This package imports neither tritonclient nor pytriton; starlette and uvicorn are imported
when a server is made, so importing it needs no extra.
"""

from msa_runtime.live.client import stream_records
from msa_runtime.live.config import LiveError, LiveLimits
from msa_runtime.live.server import LiveServer

__all__ = ["LiveError", "LiveLimits", "LiveServer", "stream_records"]
