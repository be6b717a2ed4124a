"""Provenance recorded in every result: code version, packages, machine, seeds, date."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = ["dpir-bench", "torch", "torchvision", "numpy", "scikit-image", "spandrel", "pyiqa", "lpips",
            "resize-right", "safetensors", "pillow"]
ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def git_state() -> dict:
    def run(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    try:
        commit = run("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        # results/ and data/ are outputs, not code: they do not make the tree dirty
        status = run("status", "--porcelain", "--", ".", ":!results", ":!data", ":!.snakemake", ":!.dvc")
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def device_info(device=None) -> dict:
    import torch

    info = {"device": str(device) if device is not None else None, "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device is not None and str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def provenance(device=None, **extra) -> dict:
    return {"git": git_state(), "packages": package_versions(), **device_info(device),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}
