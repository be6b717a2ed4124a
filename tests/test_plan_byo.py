"""`dpir plan` over bring-your-own rows: a checkpoint file on disk is counted on META exactly as a real
forward pass; a checkpoint still to be downloaded, and a folder of outputs made elsewhere, are listed as
not counted with the reason (the plan never downloads)."""
from __future__ import annotations

import socket

import torch
from test_foreign import write_case
from torch.utils.flop_counter import FlopCounterMode

from dpir import plan
from dpir.config import load_config
from helpers import ROOT


def _config(**methods):
    cfg = load_config([str(ROOT / "config" / "config.yaml")])
    cfg["tasks"]["sr"]["methods"].update(methods)
    return cfg


def test_a_checkpoint_on_disk_is_counted_like_a_real_forward(tmp_path):
    path = tmp_path / "hat.pth"
    ref = write_case("hat_params_ema", path)
    cfg = _config(my={"kind": "checkpoint", "path": str(path)})
    r = plan._restore_image_or_note(cfg, "sr", "my", 64, 64)
    with FlopCounterMode(display=False) as c, torch.no_grad():
        ref(torch.rand(1, 3, 16, 16))
    assert (r["image_flops"], r["nfe"], r["params"]) == (c.get_total_flops(), 1, sum(p.numel() for p in ref.parameters()))
    assert "not_planned" not in r


def test_missing_downloads_and_outputs_rows_are_noted_not_fetched(monkeypatch, tmp_path):
    monkeypatch.setenv("DPIR_WEIGHTS", str(tmp_path / "weights"))

    def no_network(*a, **k):
        raise AssertionError("dpir plan tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    cfg = _config(hat={"kind": "checkpoint", "path": "hat_srx4"})
    r = plan._restore_image_or_note(cfg, "sr", "hat", 64, 64)
    assert r["image_flops"] == 0 and "`dpir fetch hat_srx4`" in r["not_planned"]
    assert str(tmp_path / "weights") in r["not_planned"]
    r = plan._restore_image_or_note(cfg, "sr", "lanczos", 64, 64)
    assert r["nfe"] == 0 and r["not_planned"] == "restored outside the harness (kind outputs)"
