"""The parity gate every file of a pack passes against PyTorch.

- :mod:`~msa_export.gate.checks`: :class:`~msa_export.gate.checks.Check` and the thresholds.
- :mod:`~msa_export.gate.inputs`: the validation inputs and the head scorer the gate uses.
"""
