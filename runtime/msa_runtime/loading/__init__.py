"""A pack loaded for scoring: which file of each encoder runs on which engine (the per-machine
tuning record), its sessions opened and checked against the pack's contract, the face detector
and the tokenizer.

- :mod:`~msa_runtime.loading.loader`: :func:`load_pack`, what :class:`msa_runtime.Analyzer`'s
  constructor does.
- :mod:`~msa_runtime.loading.tuning`: the plan of files and providers, and ``--tune``.
"""

from msa_runtime.loading.loader import SessionFactory, load_pack, warm_up
from msa_runtime.loading.tuning import Choice, plan_sessions, tune

__all__ = [
    "Choice",
    "SessionFactory",
    "load_pack",
    "plan_sessions",
    "tune",
    "warm_up",
]
