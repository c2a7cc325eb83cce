"""Data for training and calibration: sentiment datasets (CMU-MOSI/MOSEI layouts, CSV) and the
small synthetic multimodal dataset the tour and the tests train on.

- :mod:`~msa_export.data.datasets`: :func:`~msa_export.data.datasets.load_dataset`, splits, labels.
- :mod:`~msa_export.data.synthetic`: a dataset whose label needs all three modalities.
- :mod:`~msa_export.data.synthetic_media`: its audio, frames and clip files.
"""
