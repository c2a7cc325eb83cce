"""Training fusion heads (``msa-train``): the feature cache, the layer sweep, the training loop,
metrics, and the run that ties them (data comes from :mod:`msa_export.data`)."""
