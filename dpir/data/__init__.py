"""Datasets, degradations and training patches."""
