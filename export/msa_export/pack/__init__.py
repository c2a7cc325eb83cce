"""Building a pack: each encoder cut, exported, quantized and validated, the head exported and
checked on every encoder variant, the folder written atomically, and the report.

- :mod:`~msa_export.pack.build`: :func:`build_pack`, the whole export.
- :mod:`~msa_export.pack.encoder`: one encoder; :mod:`~msa_export.pack.head`: the fusion head.
- :mod:`~msa_export.pack.preflight`: checks before any export work.
- :mod:`~msa_export.pack.folder`: the ``--out`` folder and the swap into place.
- :mod:`~msa_export.pack.report`: what ``msa-export`` prints.
"""
