"""Small shared helpers for tests (import as `from helpers import ...`; tests/ is on sys.path)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def base_config(tmp_path: Path, **over) -> dict:
    """The embedded default config merged with the tiny test config, writing under tmp_path."""
    from dpir.config import load_config

    cfg = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "test.yaml"],
                      {"out": str(tmp_path / "results"), "data_dir": str(tmp_path / "data"), **over})
    return copy.deepcopy(cfg)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def same_weights(a, b) -> bool:
    """Two modules with the same state-dict keys and bitwise-equal tensors."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def write_scores(out: Path, rec: dict) -> Path:
    """Write a results record where ``dpir score`` puts it (``<out>/scores/<task>/<dataset>/<method>/seed<k>.json``)."""
    import json

    p = Path(out) / "scores" / rec["task"] / rec["dataset"] / rec["method"] / f"seed{rec['seed']}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(rec))
    return p
