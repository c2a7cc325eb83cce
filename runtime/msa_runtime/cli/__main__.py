"""``python -m msa_runtime.cli``: the same as ``msa-run``."""

from msa_runtime.cli.run import main

main()
