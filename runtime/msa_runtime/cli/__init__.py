"""``msa-run``: the command line over :class:`msa_runtime.Analyzer`, its records and writers,
and archives on Ray (``--ray``, extra ``msa-edge[ray]``).

- :mod:`~msa_runtime.cli.run`: the command (:func:`main`); its option checks in
  :mod:`~msa_runtime.cli.options`, SIGTERM/Ctrl-C handling in :mod:`~msa_runtime.cli.signals`.
- :mod:`~msa_runtime.cli.records`: inputs expanded, one record per input.
- :mod:`~msa_runtime.cli.writers`: the output formats, one registry for ``--format`` and ``--ray``.
- :mod:`~msa_runtime.cli.batch_output`: resume keys and Parquet columns of ``--ray``'s outputs.
- :mod:`~msa_runtime.cli.ray`: :func:`~msa_runtime.cli.ray.score_archive`; joining a cluster,
  bounded in time, in :mod:`~msa_runtime.cli.ray_connect`.
"""

from msa_runtime.cli.records import score_record
from msa_runtime.cli.run import main

__all__ = [
    "main",
    "score_record",
]
