"""dpir-bench: a reproducible benchmarking harness for modular conditional diffusion image
restoration (DP-IR, Zhussip et al., NeurIPS 2024) and its baselines."""

__version__ = "0.1.0"
