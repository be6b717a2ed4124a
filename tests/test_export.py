"""``dpir export`` (dpir.export): trained networks written as foreign checkpoints that spandrel detects
again and that restore exactly like the network they came from; the RRDB name maps both ways."""
from __future__ import annotations

import pytest
import torch
from test_foreign import TINY_RRDB, rrdb_names

from dpir.checkpoint import load_network, save_network
from dpir.errors import DpirError
from dpir.export import export_network
from dpir.methods.base import BuildContext
from dpir.methods.checkpoint import build as build_checkpoint
from dpir.nets import build_network
from dpir.nets.msrresnet import MSRResNet
from dpir.official import rrdb_from_sequential, rrdb_to_sequential


def workflow(tmp_path, nets: dict) -> dict:
    """A workflow folder with the networks ``name -> (arch, kwargs)`` saved (seeded random weights)."""
    cfg = {"out": str(tmp_path / "results"), "networks": {}}
    for i, (name, (arch, kwargs)) in enumerate(nets.items()):
        torch.manual_seed(i)
        save_network(build_network(arch, **kwargs), tmp_path / "results" / "networks" / name, arch, kwargs)
        cfg["networks"][name] = {"arch": arch, "kwargs": kwargs}
    return cfg


def checkpoint_method(cfg: dict, path: str, scale: int = 4):
    ctx = BuildContext(task_name="sr", task={"kind": "sr", "scale": scale}, networks_dir="unused",
                       device=torch.device("cpu"), config=cfg)
    return build_checkpoint({"kind": "checkpoint", "path": path}, ctx)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rrdb_names_round_trip(scale):
    torch.manual_seed(0)
    seq = build_network("rrdb", **{**TINY_RRDB, "scale": scale}).state_dict()
    for old in (False, True):
        named = rrdb_from_sequential(seq, old=old)
        assert rrdb_to_sequential(named).keys() == seq.keys()
        assert all(torch.equal(rrdb_to_sequential(named)[k], v) for k, v in seq.items())
        if scale == 4:      # the names written out by hand (tests/test_foreign.py)
            assert named.keys() == rrdb_names(seq, old=old).keys()
    assert {k.rsplit(".", 1)[0] for k in rrdb_from_sequential(seq)} >= {"conv_first", "conv_body", "conv_up1",
                                                                       "conv_hr", "conv_last"}
    with pytest.raises(ValueError, match="no name in the BasicSR/ESRGAN RRDBNet layout"):
        rrdb_from_sequential({**seq, "model.1.sub.0.RDB1.conv1x1.weight": torch.zeros(1)})


@pytest.mark.parametrize("layout", ["basicsr", "raw", "esrgan_old"])
def test_exported_rrdb_is_detected_and_restores_exactly(tmp_path, layout):
    cfg = workflow(tmp_path, {"rrdb_sr": ("rrdb", TINY_RRDB)})
    dest = export_network(cfg, "rrdb_sr", layout)
    assert dest == tmp_path / "results" / "exports" / f"rrdb_sr.{layout}.pth"
    obj = torch.load(dest, weights_only=True)
    state = obj["params"] if layout == "basicsr" else obj
    assert list(obj) == ["params"] if layout == "basicsr" else "conv_first.weight" in obj
    assert ("RRDB_trunk.0.RDB1.conv1.weight" in state) == (layout == "esrgan_old")
    assert ("body.1.rdb3.conv5.bias" in state) == (layout != "esrgan_old")
    m = checkpoint_method(cfg, "{out}/exports/" + dest.name)
    assert m.architecture.startswith("ESRGAN x4, ")
    ref = load_network(tmp_path / "results" / "networks" / "rrdb_sr")
    y = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(m.restore(y), ref(y))


def test_export_other_architectures(tmp_path):
    msr = {"num_feat": 4, "num_block": 1, "upscale": 4}
    nafnet = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}
    cfg = workflow(tmp_path, {"msr": ("msrresnet", msr), "naf": ("nafnet", nafnet)})
    dest = export_network(cfg, "msr", "basicsr", tmp_path / "MSRResNet_x4.pth")
    assert dest == tmp_path / "MSRResNet_x4.pth"
    assert set(torch.load(dest, weights_only=True)["params"]) == set(MSRResNet(**msr).state_dict())
    y = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(checkpoint_method(cfg, str(dest)).restore(y),
                           load_network(tmp_path / "results" / "networks" / "msr")(y))
        m = checkpoint_method(cfg, str(export_network(cfg, "naf", "raw")), scale=1)
        assert m.architecture.startswith("NAFNet x1, ")
        assert torch.equal(m.restore(y), load_network(tmp_path / "results" / "networks" / "naf")(y))


def test_unknown_layouts_and_architectures_are_one_line_errors(tmp_path):
    cfg = workflow(tmp_path, {"rrdb_sr": ("rrdb", TINY_RRDB), "den": ("udp", {"base": 4, "levels": 1, "n_conv": 1}),
                              "msr": ("msrresnet", {"num_feat": 4, "num_block": 1})})
    with pytest.raises(DpirError, match=r"unknown export layout 'onnx'; layouts: basicsr, raw, esrgan_old$"):
        export_network(cfg, "rrdb_sr", "onnx")
    with pytest.raises(DpirError, match=r"network 'den' has architecture 'udp', which has no foreign checkpoint "
                                        r"layout; exportable architectures: rrdb \(basicsr/raw/esrgan_old\), "
                                        r"msrresnet \(basicsr/raw\)"):
        export_network(cfg, "den", "raw")
    with pytest.raises(DpirError, match=r"network 'msr' \(architecture 'msrresnet'\) has no 'esrgan_old' layout; "
                                        r"its layouts: basicsr, raw$"):
        export_network(cfg, "msr", "esrgan_old")
    with pytest.raises(DpirError, match="unknown network 'rrdb'"):
        export_network(cfg, "rrdb", "raw")
    cfg = workflow(tmp_path / "plus", {"plus": ("rrdb", {**TINY_RRDB, "plus": True})})
    with pytest.raises(DpirError, match=r"only the plain RRDBNet .* cannot be exported"):
        export_network(cfg, "plus", "basicsr")
    assert not (tmp_path / "results" / "exports").exists()       # nothing written by a refused export


def test_default_config_route_scores_exactly_as_the_network(tmp_path):
    """The embedded default's ``rrdb_checkpoint`` row: the trained RRDB exported in BasicSR's layout and
    scored through kind ``checkpoint`` restores the very PNGs of the ``rrdb`` row."""
    from helpers import base_config

    from dpir import paths
    from dpir.data.prepare import prepare
    from dpir.restore import restore_dataset
    from dpir.train.loop import train_network

    cfg = base_config(tmp_path, device="cpu", threads=1)
    assert cfg["tasks"]["sr"]["methods"]["rrdb_checkpoint"]["path"] == "{out}/exports/rrdb_sr.basicsr.pth"
    prepare(cfg, "sr", "bundled", splits=("train", "test"))
    train_network(cfg, "rrdb_sr", progress=False)
    export_network(cfg, "rrdb_sr", "basicsr")
    for method in ("rrdb", "rrdb_checkpoint"):
        restore_dataset(cfg, "sr", "bundled", method, 0, progress=False)
    pngs = {m: {p.name: p.read_bytes() for p in paths.restored_dir(cfg, "sr", "bundled", m, 0).glob("*.png")}
            for m in ("rrdb", "rrdb_checkpoint")}
    assert len(pngs["rrdb"]) == 2 and pngs["rrdb"] == pngs["rrdb_checkpoint"]
