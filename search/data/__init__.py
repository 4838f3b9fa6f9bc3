"""Datasets: one registered loader per file in ``datasets/``, split and normalised by :mod:`.core`."""
