"""The baselines' shared code: no baseline imports another baseline's package (shared code lives in
:mod:`baselines.common`), and the shared blocks keep the numerics they had inside SRDiff's package."""
from __future__ import annotations

import torch
from test_import_rules import ROOT, imported_names, module_name

BASELINES = ("srdiff", "indi", "diffir")


def test_no_baseline_imports_another():
    found = []
    for path in sorted((ROOT / "baselines").rglob("*.py")):
        module = module_name(path)
        own = module.split(".")[1] if module.count(".") >= 1 else None
        for line, imported in imported_names(path):
            for other in BASELINES:
                target = f"baselines.{other}"
                if other != own and (imported == target or imported.startswith(target + ".")):
                    found.append(f"{path.relative_to(ROOT)}:{line} {module} -> {imported}")
    assert not found, "baselines import each other (move the shared code to baselines.common):\n" + "\n".join(found)


def test_pad_and_lr_multiple():
    from baselines.common.blocks import lr_multiple, pad_to_multiple

    x = torch.arange(15.0).view(1, 1, 3, 5)
    p = pad_to_multiple(x, 4)
    assert p.shape == (1, 1, 4, 8) and torch.equal(p[..., :3, :5], x)
    assert torch.equal(p[..., 3, :5], x[..., 2, :]) and torch.equal(p[..., :3, 7], x[..., :, 4])  # replicate
    assert pad_to_multiple(p, 4) is p
    assert (lr_multiple(8, 4), lr_multiple(8, 3), lr_multiple(8, 1)) == (2, 8, 8)
