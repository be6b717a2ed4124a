"""Baseline methods compared against DP-IR (SRDiff, InDI, DiffIR), each behind the harness's contracts."""
