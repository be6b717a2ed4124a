"""Baseline methods compared against DP-IR (SRDiff, InDI, DiffIR), each behind the harness's contracts.

Each baseline is one folder whose ``__init__.py`` exports its registry entries (``ENTRIES``, torch-free
data: method kinds and trainers with their config keys, architectures); :data:`dpir.registry.PACKAGES`
lists the folders, one line each.
"""
