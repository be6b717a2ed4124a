"""Any checkpoint spandrel reads (dpir.nets.foreign, dpir.nets.msrresnet, method kind ``checkpoint``,
``arch: spandrel`` networks): detection from files in the official layouts, restoration equal to the
original module, one-line errors, import into the workflow and DP-IR with a detected IR network.

Every checkpoint is written here by the test from a tiny module (random weights), in the layout its
release uses: BasicSR ``params`` / ``params_ema``, raw state dicts, the new and old ESRGAN key names.
"""
from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torch import nn

from dpir.errors import DpirError
from dpir.nets import build_network
from dpir.nets.foreign import Called, from_state, load_foreign, supported_architectures
from dpir.nets.msrresnet import MSRResNet, infer_kwargs


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


TINY_SWINIR = {"upscale": 4, "in_chans": 3, "img_size": 8, "window_size": 4, "img_range": 1.0, "depths": [1],
               "embed_dim": 8, "num_heads": [2], "mlp_ratio": 1.0, "upsampler": "pixelshuffledirect",
               "resi_connection": "1conv"}
TINY_RRDB = {"in_nc": 3, "out_nc": 3, "num_filters": 8, "num_blocks": 2, "scale": 4}


def _swinir():
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    return SwinIR(**TINY_SWINIR)


def _hat():
    from spandrel.architectures.HAT.__arch.HAT import HAT

    return HAT(upscale=4, in_chans=3, img_size=8, window_size=4, compress_ratio=2, squeeze_factor=2,
               overlap_ratio=0.5, img_range=1.0, depths=[1], embed_dim=8, num_heads=[2], mlp_ratio=1.0,
               upsampler="pixelshuffle", resi_connection="1conv", num_feat=8)


def _nafnet():
    from spandrel.architectures.NAFNet.__arch.NAFNet_arch import NAFNet

    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])


def _restormer():
    from spandrel_extra_arches.architectures.Restormer.__arch.restormer_arch import (
        Restormer,
    )

    return Restormer(inp_channels=3, out_channels=3, dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                     heads=[1, 1, 1, 1], ffn_expansion_factor=1.0)


def rrdb_names(state: dict, old: bool = False) -> dict:
    """Our (spandrel's sequential) RRDB state under the BasicSR names, or the old ESRGAN ones; written
    out by hand for 2 blocks at x4, independent of dpir.official's converters."""
    new = {"model.0": "conv_first", "model.1.sub.2": "conv_body", "model.3": "conv_up1", "model.6": "conv_up2",
           "model.8": "conv_hr", "model.10": "conv_last"}
    olds = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in state.items():
        stem, suffix = k.rsplit(".", 1)
        if ".RDB" in k:      # model.1.sub.<i>.RDB<j>.conv<k>.0.<w|b>
            p = stem.split(".")
            out[f"RRDB_trunk.{p[3]}.{p[4]}.{p[5]}.{suffix}" if old
                else f"body.{p[3]}.rdb{p[4][3:]}.{p[5]}.{suffix}"] = v
        else:
            name = new[stem]
            out[f"{olds.get(name, name) if old else name}.{suffix}"] = v
    return out


# name -> (module builder, file content from the state dict, spandrel id, scale)
CASES = {
    "swinir_params": (_swinir, lambda s: {"params": s}, "SwinIR", 4),
    "hat_params_ema": (_hat, lambda s: {"params_ema": s, "params": {k: torch.zeros_like(v) for k, v in s.items()}},
                       "HAT", 4),
    "rrdb_basicsr": (lambda: build_network("rrdb", **TINY_RRDB), lambda s: {"params_ema": rrdb_names(s)}, "ESRGAN", 4),
    "rrdb_esrgan_old": (lambda: build_network("rrdb", **TINY_RRDB), lambda s: rrdb_names(s, old=True), "ESRGAN", 4),
    "nafnet_raw": (_nafnet, lambda s: s, "NAFNet", 1),
    "restormer_params": (_restormer, lambda s: {"params": s}, "Restormer", 1),
    "msrresnet_params": (lambda: MSRResNet(num_feat=8, num_block=2, upscale=4), lambda s: {"params": s},
                         "MSRResNet", 4),
    "msrresnet_x3_ddp": (lambda: MSRResNet(num_feat=4, num_block=1, upscale=3),
                         lambda s: {f"module.{k}": v for k, v in s.items()}, "MSRResNet", 3),
}


def write_case(name: str, path):
    builder, layout, _, _ = CASES[name]
    torch.manual_seed(0)
    module = builder().eval()
    torch.save(layout(module.state_dict()), path)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_detected_and_restored_like_the_original(name, tmp_path):
    path = tmp_path / f"{name}.pth"
    ref = write_case(name, path)
    _, _, arch, scale = CASES[name]
    net = load_foreign(path, "networks.x.official")
    assert (net.architecture, net.scale, net.in_channels, net.out_channels) == (arch, scale, 3, 3)
    assert net.params == n_params(ref)
    assert type(net.module) is type(ref)            # the raw module, not spandrel's clamping descriptor
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net.module.eval()(x)
        assert out.shape == (1, 3, 16 * scale, 16 * scale)
        assert torch.equal(out, ref(x))


def test_facts_and_padding():
    torch.manual_seed(0)
    restormer = load_foreign(_restormer().state_dict(), "k")
    assert restormer.multiple_of == 8 and restormer.pad_multiple() == 8 and restormer.purpose == "Restoration"
    assert restormer.module.input_multiple == 8      # travels with the module (read by default_pad_multiple)
    swinir = load_foreign({"params": _swinir().state_dict()}, "k")
    assert swinir.pad_multiple() == 4                       # whole windows (window_size 4)
    ref = _swinir()
    assert n_params(ref) == 5490 and swinir.describe() == "SwinIR x4, 5.5k params (spandrel)"
    assert load_foreign(MSRResNet().state_dict(), "k").describe() == "MSRResNet x4, 1.52M params (spandrel)"
    assert swinir.facts() == {"architecture": "SwinIR", "scale": 4, "in_channels": 3, "out_channels": 3,
                              "params": n_params(ref), "multiple_of": 1, "minimum": 16, "tags": swinir.tags,
                              "purpose": "SR"}


def test_msrresnet_is_basicsrs_modified_srresnet():
    net = MSRResNet()
    keys = set(net.state_dict())
    # the names of BasicSR's MSRResNet_x4.pth (`params`): 16 residual blocks, two x2 upsampling steps
    expected = {f"{stem}.{p}" for p in ("weight", "bias") for stem in
                ["conv_first", "upconv1", "upconv2", "conv_hr", "conv_last"]
                + [f"body.{i}.conv{j}" for i in range(16) for j in (1, 2)]}
    assert keys == expected
    # conv params 9 * in * out + out: 3->64, 32 x 64->64, 2 x 64->256, 64->64, 64->3: BasicSR's "1.52M"
    conv = lambda i, o: 9 * i * o + o
    assert n_params(net) == conv(3, 64) + 33 * conv(64, 64) + 2 * conv(64, 256) + conv(64, 3) == 1_517_571
    assert infer_kwargs(net.state_dict()) == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 16,
                                              "upscale": 4}
    assert infer_kwargs(MSRResNet(num_feat=4, num_block=3, upscale=2).state_dict())["upscale"] == 2
    # with a zero residual branch the output is the bilinear upsampling of the input (the global skip)
    small = MSRResNet(num_feat=4, num_block=1, upscale=3)
    with torch.no_grad():
        small.conv_last.weight.zero_()
        small.conv_last.bias.zero_()
        x = torch.rand(1, 3, 5, 7)
        assert torch.equal(small(x), torch.nn.functional.interpolate(x, scale_factor=3, mode="bilinear",
                                                                      align_corners=False))
    with pytest.raises(ValueError, match="upscale 2, 3, 4"):
        MSRResNet(upscale=8)


def test_a_call_fn_model_is_wrapped_and_keeps_its_names():
    """MPRNet returns its three stages; spandrel's call_fn takes the first.  The wrapper does the same
    without clamping, and its state dict is the raw model's, so it rebuilds from its saved weights."""
    from spandrel_extra_arches.architectures.MPRNet.__arch.MPRNet import MPRNet

    torch.manual_seed(0)
    ref = MPRNet(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1, reduction=2).eval()
    net = load_foreign(ref.state_dict(), "k")
    assert net.architecture == "MPRNet" and isinstance(net.module, Called)
    assert set(net.module.state_dict()) == set(ref.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.module.eval()(x), ref(x)[0])
        again = from_state(net.module.state_dict()).eval()
        assert torch.equal(again(x), ref(x)[0])


# ------------------------------------------------------------------------------------------ bad input

def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) < 2000
    return msg


def test_missing_text_and_zip_files_are_one_line_errors(tmp_path):
    with pytest.raises(DpirError, match=r"absent\.pth \(config key 'networks\.ir\.official'\) does not exist") as e:
        load_foreign(tmp_path / "absent.pth", "networks.ir.official")
    one_line(e)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n" * 3)
    with pytest.raises(DpirError, match=r"cannot read checkpoint .*notes\.pth.*re-download it") as e:
        load_foreign(text, "k")
    one_line(e)
    bundle = tmp_path / "release.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("a/model_x4.pth", b"not a checkpoint")
        z.writestr("README.txt", b"release")
    with pytest.raises(DpirError, match=r"cannot read checkpoint .*release\.zip.*re-download it") as e:
        load_foreign(bundle, "k")
    one_line(e)


def test_unknown_architecture_lists_the_supported_ids(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.stem.weight": torch.rand(4, 3, 3, 3), "head.proj.bias": torch.rand(4)}, path)
    with pytest.raises(DpirError, match=r"mystery\.pth \(config key 'p'\): spandrel does not recognise") as e:
        load_foreign(path, "p")
    msg = one_line(e)
    ids = supported_architectures()
    assert {"HAT", "SwinIR", "ESRGAN", "NAFNet", "Restormer", "MPRNet", "MSRResNet"} <= set(ids)
    assert ", ".join(ids) in msg and "kind: python" in msg
    with pytest.raises(DpirError, match=r"saved network of architecture 'spandrel' no longer loads .*import-official"):
        from_state({"encoder.stem.weight": torch.rand(4, 3, 3, 3)})
    torch.save({"params": [1, 2, 3]}, path)
    with pytest.raises(DpirError, match="holds no weight tensors"):
        load_foreign(path, "p")


def test_an_inpainting_model_is_refused(monkeypatch):
    """A model that takes an image and a mask (spandrel's MaskedImageModelDescriptor) is no restoration
    network of the benchmark (a stand-in architecture: the real inpainting models are large)."""
    from spandrel import Architecture, ArchSupport, MaskedImageModelDescriptor

    import dpir.nets.foreign as F

    class Inpaint(Architecture):
        def __init__(self):
            super().__init__(id="Inpaint", detect=lambda s: "inpaint.weight" in s)

        def load(self, state_dict):
            conv = nn.Conv2d(4, 3, 1)
            return MaskedImageModelDescriptor(conv, {k.split(".", 1)[1]: v for k, v in state_dict.items()},
                                              architecture=self, purpose="Inpainting", tags=[], supports_half=False,
                                              supports_bfloat16=False, input_channels=3, output_channels=3)

    reg = F.registry().copy()
    reg.add(ArchSupport.from_architecture(Inpaint()))
    monkeypatch.setattr(F, "_REGISTRY", reg)
    conv = nn.Conv2d(4, 3, 1)
    with pytest.raises(DpirError, match=r"is a Inpaint inpainting model \(it takes an image and a mask\), "
                                        r"not an image-to-image") as e:
        load_foreign({f"inpaint.{k}": v for k, v in conv.state_dict().items()}, "k")
    one_line(e)


# ------------------------------------------------------------------------------------ method kind

def build_checkpoint_method(path, task: dict, task_name: str = "sr", **cfg):
    from dpir.methods.base import BuildContext
    from dpir.methods.checkpoint import build

    ctx = BuildContext(task_name=task_name, task=task, networks_dir="unused", device=torch.device("cpu"),
                       config={"out": str(path.parent)})
    return build({"kind": "checkpoint", "path": "{out}/" + path.name, **cfg}, ctx)


def test_checkpoint_method_restores_like_the_module(tmp_path):
    path = tmp_path / "hat.pth"
    ref = write_case("hat_params_ema", path)
    m = build_checkpoint_method(path, {"kind": "sr", "scale": 4})
    assert m.expected_nfe() == 1 and not m.stochastic and m.pad_multiple == 4
    assert (m.checkpoint_source, m.checkpoint_path) == (f"file:{path}", str(path)) and m.foreign["scale"] == 4
    assert n_params(ref) == 8751 and m.architecture == "HAT x4, 8.8k params (spandrel)"
    y = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.restore(y), ref(y))
        odd = torch.rand(1, 3, 5, 7)       # padded to whole windows, output cropped
        assert m.restore(odd).shape == (1, 3, 20, 28)
    assert build_checkpoint_method(path, {"kind": "sr", "scale": 4}, pad_multiple=8).pad_multiple == 8


def test_scale_mismatch_and_burst_are_refused(tmp_path):
    path = tmp_path / "msr.pth"
    write_case("msrresnet_params", path)
    with pytest.raises(DpirError, match=r"msr\.pth \(tasks\.deblur\.methods\.<method>\.path\) is a x4 MSRResNet "
                                        r"model, but task 'deblur' needs x1") as e:
        build_checkpoint_method(path, {"kind": "deblur", "scale": 1}, "deblur")
    one_line(e)
    with pytest.raises(DpirError, match="needs x2"):
        build_checkpoint_method(path, {"kind": "sr", "scale": 2})
    with pytest.raises(DpirError, match="burst task"):
        build_checkpoint_method(path, {"kind": "burst", "scale": 4}, "burst")
    with pytest.raises(DpirError, match=r"neither a weights name of the fetch registry .* nor an existing file"):
        build_checkpoint_method(tmp_path / "absent.pth", {"kind": "sr", "scale": 4})


# ------------------------------------------------------------------------ arch: spandrel networks

def test_import_official_spandrel_network_round_trip(tmp_path):
    from helpers import base_config

    from dpir import paths
    from dpir.checkpoint import load_network, read_meta
    from dpir.official import import_official

    path = tmp_path / "HAT_tiny.pth"
    ref = write_case("hat_params_ema", path)
    cfg = base_config(tmp_path, networks={"hat_ir": {"arch": "spandrel", "task": "sr", "official": str(path)}})
    out = import_official(cfg, "hat_ir")
    meta = read_meta(out.parent)
    assert meta["arch"] == "spandrel" and meta["kwargs"] == {} and meta["official_source"] == f"file:{path}"
    assert meta["foreign"] == {"architecture": "HAT", "scale": 4, "in_channels": 3, "out_channels": 3,
                               "params": n_params(ref), "multiple_of": 1, "minimum": 16, "tags": meta["foreign"]["tags"],
                               "purpose": "SR"}
    net = load_network(paths.network_dir(cfg, "hat_ir"))
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert type(net) is type(ref) and net.input_multiple == 4          # whole HAT windows
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
    with pytest.raises(DpirError, match=r"'spandrel' is read off a checkpoint"):
        build_network("spandrel")
    bad = base_config(tmp_path, networks={"hat_ir": {"arch": "spandrel", "task": "sr", "official": str(path),
                                                     "kwargs": {"upscale": 4}}})
    with pytest.raises(DpirError, match=r"'networks\.hat_ir\.kwargs': architecture 'spandrel' reads its"):
        import_official(bad, "hat_ir")


def test_dpir_with_a_detected_ir_network(tmp_path):
    """A fusion net trained with ``ir:`` naming an imported spandrel checkpoint, then DP-IR restoring
    with it: both go through the unchanged trainer and method (they load networks by name)."""
    from helpers import base_config

    from dpir import paths
    from dpir.data.prepare import prepare
    from dpir.official import import_official
    from dpir.restore import restore_dataset
    from dpir.train.loop import train_network

    path = tmp_path / "MSRResNet_tiny.pth"
    write_case("msrresnet_params", path)
    cfg = base_config(tmp_path, device="cpu", threads=1, networks={
        "ir_ckpt": {"arch": "spandrel", "task": "sr", "official": str(path)},
        "fusion_ckpt": {"arch": "fusion", "task": "sr",
                        "kwargs": {"n_f": 4, "growth": 4, "n_layers": 1, "t_dim": 8, "t_hidden": 8, "image_skip": True},
                        "train": {"trainer": "fusion", "ir": "ir_ckpt", "denoiser": "udp_denoiser", "tau": 5, "T": 100,
                                  "dataset": "bundled", "steps": 2, "batch": 2, "patch": 32, "checkpoint_every": 2}}},
        tasks={"sr": {"methods": {"dpir_ckpt": {"kind": "dpir", "ir": "ir_ckpt", "denoiser": "udp_denoiser",
                                                "fusion": "fusion_ckpt", "T": 100, "tau": 2, "max_images": 1}}}})
    prepare(cfg, "sr", "bundled")
    import_official(cfg, "ir_ckpt")
    train_network(cfg, "udp_denoiser", progress=False)
    train_network(cfg, "fusion_ckpt", progress=False)
    assert json.loads((paths.network_dir(cfg, "fusion_ckpt") / "model.json").read_text())["step"] == 2
    run = restore_dataset(cfg, "sr", "bundled", "dpir_ckpt", 0, progress=False)
    assert run["nfe"] == 2 + 1        # tau reverse steps + the IR call
    out = paths.restored_dir(cfg, "sr", "bundled", "dpir_ckpt", 0)
    assert len(list(out.glob("*.png"))) == 1
