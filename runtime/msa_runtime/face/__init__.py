"""The speaker's face: the MTCNN cascade (numpy + ONNX sessions), face boxes and crops, tracking
from frame to frame, and the area resampling the cascade's pyramid needs.

- :mod:`~msa_runtime.face.cascade`: :class:`FaceDetector` (P-, R-, O-net).
- :mod:`~msa_runtime.face.boxes`: the pyramid, NMS, squaring, regression and crop windows.
- :mod:`~msa_runtime.face.track`: :class:`FaceTrack`, a face followed without a full detection
  per frame.
- :mod:`~msa_runtime.face.area`: torch-exact area and bilinear image resampling in numpy.
"""

from msa_runtime.face.cascade import FaceDetector
from msa_runtime.face.track import FaceTrack, TrackOptions

__all__ = [
    "FaceDetector",
    "FaceTrack",
    "TrackOptions",
]
