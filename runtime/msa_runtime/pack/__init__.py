"""The pack: the contract between ``msa-export`` (writes it) and the runtime (reads it).

A pack is a folder::

    manifest.json          format version, encoders, preprocessing, head, sha256 of every file
    tokenizer.json         when the pack has a text encoder
    text.int8.onnx ...     one ONNX file per encoder and precision: int8 (dynamic, for ONNX
                           Runtime's CPU EP), fp16 (CUDA), fp32, ov-int8 (static QDQ by NNCF,
                           for the OpenVINO EP)
    head.onnx              the fusion head (fp32; it is tiny)
    face_pnet.onnx ...     the MTCNN face detector (P-, R-, O-net), when frames are face-cropped

Reading checks the format version, that every file named stays inside the folder, and (by
default) the sha256 of every file. Nothing is ever unpickled.

Each encoder records which of its files each execution provider may run (``providers``: the
files that passed the parity gate through that provider, the default first). Packs without it
(older exports) get the defaults of :data:`PROVIDER_ORDER`.

The bottom layer of the runtime: it imports nothing of the runtime but :mod:`msa_runtime.errors`.

- :mod:`~msa_runtime.pack.manifest`: the data model (:class:`Manifest` and its entries) and the
  format's constants; :mod:`~msa_runtime.pack.prep` and :mod:`~msa_runtime.pack.face`: the typed
  preprocessing and face detector entries; :mod:`~msa_runtime.pack.schema`: typed JSON readers.
- :mod:`~msa_runtime.pack.parse`: the manifest's JSON validated into a :class:`Manifest`.
- :mod:`~msa_runtime.pack.files`: folders on disk (:func:`load_manifest`, :func:`write_manifest`,
  :func:`verify_files`, :func:`pack_digest`).
- :mod:`~msa_runtime.pack.contract`: the inputs and outputs each ONNX file must have.
"""

from msa_runtime.pack.face import FaceDetectorEntry
from msa_runtime.pack.files import load_manifest, pack_digest, sha256_file, verify_files, write_manifest
from msa_runtime.pack.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_DIGEST,
    MODALITIES,
    PRECISIONS,
    PROVIDER_ORDER,
    EncoderEntry,
    FileRecord,
    HeadEntry,
    Manifest,
    default_providers,
    face_detector_files,
    manifest_to_dict,
)
from msa_runtime.pack.parse import asr_folder, parse_manifest
from msa_runtime.pack.prep import (
    PREP_LIMITS,
    PREP_TYPES,
    AudioPrep,
    Prep,
    TextPrep,
    VisionPrep,
    prep_from_dict,
    prep_to_dict,
)

__all__ = [
    "AudioPrep",
    "EncoderEntry",
    "FORMAT",
    "FORMAT_VERSION",
    "FaceDetectorEntry",
    "FileRecord",
    "HeadEntry",
    "MANIFEST",
    "MANIFEST_DIGEST",
    "MODALITIES",
    "Manifest",
    "PRECISIONS",
    "PREP_LIMITS",
    "PREP_TYPES",
    "PROVIDER_ORDER",
    "Prep",
    "TextPrep",
    "VisionPrep",
    "asr_folder",
    "default_providers",
    "face_detector_files",
    "load_manifest",
    "manifest_to_dict",
    "pack_digest",
    "parse_manifest",
    "prep_from_dict",
    "prep_to_dict",
    "sha256_file",
    "verify_files",
    "write_manifest",
]
