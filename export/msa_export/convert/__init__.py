"""ONNX files: torch -> ONNX, dynamic int8 and fp16 variants, the accuracy-aware int8 search, and
OpenVINO's static int8 file.

- :mod:`~msa_export.convert.onnx_file`: export, quantize, convert, run.
- :mod:`~msa_export.convert.int8_search`: the fewest MatMuls kept in fp32 that the gate needs.
- :mod:`~msa_export.convert.openvino`: the ``ov-int8`` file (NNCF) and its calibration data.
"""
