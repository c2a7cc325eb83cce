"""The torch models a pack is made from: encoders loaded and cut at a layer (with WavLM's front
end rewritten for int8), fusion heads and their checkpoints, the MTCNN face detector and the
Whisper ASR model.

- :mod:`~msa_export.models.encoders`: load (hub id, folder, package, seeded random) and cut.
- :mod:`~msa_export.models.wavlm_frontend`: WavLM's convolutional front end as slices + MatMul.
- :mod:`~msa_export.models.heads`: the gated and CMS heads, and ``head.pt`` checkpoints.
- :mod:`~msa_export.models.face`: facenet-pytorch's MTCNN exported to ONNX.
- :mod:`~msa_export.models.asr`: Whisper models for the pack's ``asr/`` folder.
"""
