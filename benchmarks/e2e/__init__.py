"""The end-to-end benchmark (``benchmarks/bench_e2e.py``) by job: ``common`` (contenders, targets),
``clips`` (generated media), ``measure`` (timing, RSS, interference), ``flops``, ``pipelines``
(what each contender runs), ``profile`` (ORT profiles), ``machine`` (CPU, peak, sizes),
``workers`` (subprocesses), ``runs`` (each contender and stream in its worker), ``analysis``,
``levers``, ``variants`` (bench_levers' encoder variants), ``render`` (the results files)."""
