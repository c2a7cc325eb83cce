"""Training side of msa-edge: datasets, metrics and synthetic data for fitting fusion heads."""
