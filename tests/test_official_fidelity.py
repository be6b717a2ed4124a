"""Official-weights fidelity (issue 16): imported networks run as their official test code runs them.

- SwinIR's test-time padding (main_test_swinir.py: flip-and-concatenate to ``(h // 8 + 1) * 8``);
- SRDiff's residual reference (utils/dataset.py: ``imresize(img_lr / 256, 4)``, MATLAB bicubic);
- per-architecture key policies and ``params`` / ``params_ema`` preference (dpir.official.PROTOCOLS);
- the official inference precision (BSRT: autocast fp16 on CUDA, fp32 on the CPU; an official bf16 runs
  under CPU bf16 autocast).

Every reference here is computed independently of the code under test: the official padding with
``torch.cat`` / ``torch.flip`` as the official script describes it and with ``numpy.pad(mode="symmetric")``;
MATLAB's ``imresize`` as a small numpy re-implementation of its cubic contributions."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from helpers import base_config, same_weights

from dpir.checkpoint import load_network, load_state
from dpir.errors import DpirError

TINY_SWINIR = {"upscale": 4, "in_chans": 3, "img_size": 16, "window_size": 8, "img_range": 1.0, "depths": [2],
               "embed_dim": 12, "num_heads": [2], "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect",
               "resi_connection": "1conv"}
BSRT_TINY = {"burst_size": 3, "embed_dim": 12, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4,
             "mlp_ratio": 2.0, "num_feat": 8, "groups": 2, "flow": True, "extract": "swin", "trunk": "swin"}
NAF_TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}
SR_TASK = {"kind": "sr", "scale": 4}


def official_swinir_pad(img: torch.Tensor, window: int) -> torch.Tensor:
    """SwinIR's test-time padding as main_test_swinir.py describes it: the image, then its flip along
    rows, cut to (h // window + 1) * window rows; the same along columns."""
    h, w = img.shape[-2:]
    img = torch.cat([img, torch.flip(img, [2])], 2)[:, :, : (h // window + 1) * window, :]
    return torch.cat([img, torch.flip(img, [3])], 3)[:, :, :, : (w // window + 1) * window]


def imresize_matlab(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for upscaling (no antialiasing) of (H, W, C) float64:
    Keys' cubic with a = -0.5, source coordinate u = x / s + (1 - 1 / s) / 2 (1-based), four taps,
    borders mirrored with the edge pixel repeated."""
    def cubic(x):
        ax = np.abs(x)
        return np.where(ax <= 1, 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1,
                        np.where(ax <= 2, -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2, 0.0))

    def matrix(n):
        out = np.zeros((n * scale, n))
        for i in range(n * scale):
            u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
            first = math.floor(u - 2)
            taps = np.arange(first, first + 5)                  # 1-based source pixels within reach
            wts = cubic(u - taps)
            wts = wts / wts.sum()
            for t, wt in zip(taps, wts):
                j = t - 1
                j = -j - 1 if j < 0 else (2 * n - 1 - j if j >= n else j)     # symmetric border
                out[i, j] += wt
        return out

    rows, cols = matrix(img.shape[0]), matrix(img.shape[1])
    return np.einsum("ih,hwc,jw->ijc", rows, img, cols)


# ------------------------------------------------------------------------------------- SwinIR padding

def test_swinir_official_padding_equals_the_official_protocol_on_61x64():
    from dpir.methods.simple import pad_to_multiple

    x = torch.rand(2, 3, 61, 64, generator=torch.Generator().manual_seed(0))
    yp, size = pad_to_multiple(x, 8, "swinir_official")
    assert size == (61, 64) and tuple(yp.shape[-2:]) == (64, 72)   # 64 already fits: one more window
    assert torch.equal(yp, official_swinir_pad(x, 8))
    # the edge pixel is repeated: row 61 (0-based) is row 60, row 62 is row 59
    assert torch.equal(yp[..., 61, :64], x[..., 60, :]) and torch.equal(yp[..., 62, :64], x[..., 59, :])
    # ours (reflect, next multiple) is another image: 64 x 64, row 61 is row 59
    ref, _ = pad_to_multiple(x, 8)
    assert tuple(ref.shape[-2:]) == (64, 64) and torch.equal(ref[..., 61, :], x[..., 59, :])


def test_swinir_official_padding_below_one_window_and_burst_shapes():
    from dpir.methods.simple import pad_to_multiple

    x = torch.rand(1, 2, 3, 3, 5, generator=torch.Generator().manual_seed(1))   # (B, N, C, h, w)
    yp, _ = pad_to_multiple(x, 8, "swinir_official")
    expect = np.pad(x.numpy(), [(0, 0)] * 3 + [(0, 5), (0, 3)], mode="symmetric")   # 3 -> 8, 5 -> 8
    assert tuple(yp.shape) == (1, 2, 3, 8, 8) and np.array_equal(yp.numpy(), expect)
    with pytest.raises(ValueError, match="pad mode must be one of"):
        pad_to_multiple(x, 8, "mirror")


@pytest.fixture
def imported_swinir(staged):
    from dpir.nets import build_network
    from dpir.official import import_official

    torch.manual_seed(0)
    ref = build_network("swinir", **TINY_SWINIR).eval()
    path = staged / "swinir_x4.pth"
    torch.save({"params": ref.state_dict()}, path)
    cfg = base_config(staged, networks={"swinir_sr": {"official": str(path), "kwargs": TINY_SWINIR}})
    out = import_official(cfg, "swinir_sr")
    return ref, out.parent


def test_imported_swinir_records_and_runs_the_official_padding(imported_swinir):
    from dpir.methods.simple import Backbone, default_pad_multiple, restore_padded

    ref, folder = imported_swinir
    meta = json.loads((folder / "model.json").read_text())
    assert meta["official_inference"] == {"pad_mode": "swinir_official", "pad_multiple": 8, "precision": "fp32",
                                          "source": "JingyunLiang/SwinIR main_test_swinir.py"}
    net = load_network(folder)
    assert net.official_inference["pad_mode"] == "swinir_official" and default_pad_multiple(net, SR_TASK) == 8
    y = torch.rand(1, 3, 61, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expect = ref(official_swinir_pad(y, 8))[..., : 61 * 4, : 64 * 4]
        reflect = ref(torch.nn.functional.pad(y, (0, 0, 0, 3), mode="reflect"))[..., : 61 * 4, :]
        # the backbone row and DP-IR's IR call, with nothing in their config
        assert torch.equal(Backbone(net, default_pad_multiple(net, SR_TASK), 4).restore(y), expect)
        assert torch.equal(restore_padded(net, y, 8), expect)
        assert torch.equal(restore_padded(net, y, 8, mode="reflect"), reflect)     # an explicit mode wins
    assert (expect - reflect).abs().max() > 1 / 255       # the protocols differ measurably


def test_network_trained_here_keeps_reflect_padding():
    from dpir.methods.simple import Backbone, pad_mode_of, restore_padded

    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    assert pad_mode_of(net) == "reflect"
    y = torch.rand(1, 3, 13, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expect = net(torch.nn.functional.pad(y, (0, 6, 0, 3), mode="reflect"))[..., :13, :10]
        assert torch.equal(restore_padded(net, y, 8), expect)
        assert torch.equal(Backbone(net, 8, 1).restore(y), expect)


# ------------------------------------------------------------------------------------- SRDiff reference

def test_srdiff_official_reference_is_imresize_of_lr_over_256():
    from baselines.common.blocks import bicubic_up
    from baselines.srdiff.sampler import lr_reference

    rng = np.random.default_rng(4)
    lr_u8 = rng.integers(0, 256, (7, 9, 3)).astype(np.float64)            # the official uint8 LR
    lr = torch.from_numpy(lr_u8 / 255).permute(2, 0, 1)[None].float()       # ours: [0, 1]
    expect = torch.from_numpy(imresize_matlab(lr_u8 / 256, 4)).permute(2, 0, 1)[None]
    got = lr_reference(lr, 4, "official")
    assert got.shape == (1, 3, 28, 36) and got.dtype == torch.float32
    assert torch.allclose(got.double(), expect, rtol=0, atol=2e-6)
    diff = (bicubic_up(lr, 4) - got).abs().max().item()
    assert diff > 1 / 255                                                    # why the issue was filed
    with pytest.raises(ValueError, match="reference must be one of"):
        lr_reference(lr, 4, "lanczos")


def _tiny_srdiff(**kw):
    from baselines.srdiff.nets import SRDiffNet

    torch.manual_seed(5)
    return SRDiffNet(rrdb={"nf": 8, "nb": 3, "gc": 4}, hidden=8, dim_mults=[1, 2], scale=4, T=3, **kw)


def test_imported_srdiff_uses_the_official_reference(staged, monkeypatch):
    from baselines.srdiff import method
    from baselines.srdiff.checkpoint import load_official
    from baselines.srdiff.sampler import cosine_schedule
    from dpir.methods.base import BuildContext
    from dpir.official import import_official

    ref = _tiny_srdiff()
    state = {**ref.state_dict(), "betas": torch.tensor(cosine_schedule(3, 0.008).betas[1:], dtype=torch.float32)}
    path = staged / "model_ckpt_steps_400000.ckpt"
    torch.save({"global_step": 1, "state_dict": {"model": state}}, path)
    assert ref.residual_reference == "torch"                                  # trained here: ours
    assert load_official(path).residual_reference == "torch"                  # the loader only loads weights
    ctx = BuildContext("sr", SR_TASK, str(staged), torch.device("cpu"))
    assert method.build({"official": str(path)}, ctx).net.residual_reference == "official"   # method `official:`
    cfg = base_config(staged)
    cfg["networks"]["srdiff"] = {"arch": "srdiff", "task": "sr", "official": str(path), "kwargs": {}}
    folder = import_official(cfg, "srdiff").parent
    meta = json.loads((folder / "model.json").read_text())
    assert meta["official_inference"]["residual_reference"] == "official" and "reference" not in meta["kwargs"]
    net = load_network(folder)
    assert net.residual_reference == "official" and same_weights(net, ref)

    # the restore: with a zero residual its output is the reference itself, clipped and cropped
    monkeypatch.setattr(method, "sample", lambda eps, sched, shape, gen, device=None, clip=1.0: torch.zeros(shape))
    lr_u8 = np.random.default_rng(6).integers(0, 256, (6, 10, 3)).astype(np.float64)
    y = torch.from_numpy(lr_u8 / 255).permute(2, 0, 1)[None].float()
    expect = torch.from_numpy(imresize_matlab(lr_u8 / 256, 4)).permute(2, 0, 1)[None].clamp(0, 1)
    out = method.SRDiff(net).restore(y, None)
    assert torch.allclose(out.double(), expect, rtol=0, atol=2e-6)
    assert not torch.allclose(method.SRDiff(ref).restore(y, None).double(), expect, rtol=0, atol=1e-3)


def test_srdiff_reference_is_a_kwarg_for_networks_trained_here():
    from baselines.srdiff.sampler import lr_reference

    net = _tiny_srdiff(reference="official")
    lr = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(net.lr_reference(lr), lr_reference(lr, 4, "official"))
    with pytest.raises(DpirError, match="reference must be 'torch' or 'official'"):
        _tiny_srdiff(reference="matlab")


# ------------------------------------------------------------------------------------- key policies

def test_every_protocol_row_is_well_formed():
    from dpir.checkpoint import KEY_POLICIES
    from dpir.methods.simple import PAD_MODES
    from dpir.official import DEFAULT_PROTOCOL, PROTOCOLS
    from dpir.precision import PRECISIONS

    for arch, row in {**PROTOCOLS, "default": DEFAULT_PROTOCOL}.items():
        assert row.unexpected in KEY_POLICIES and row.missing in KEY_POLICIES, arch
        assert row.pad_mode in (None, *PAD_MODES) and row.precision in PRECISIONS and row.source, arch
    assert (PROTOCOLS["swinir"].prefer[0], PROTOCOLS["rrdb"].prefer[0], PROTOCOLS["diffir_s2"].prefer[0],
            DEFAULT_PROTOCOL.prefer[0]) == ("params", "params", "params_ema", "params_ema")
    assert (PROTOCOLS["diffir_s2"].unexpected, PROTOCOLS["diffir_s2"].missing) == ("warn", "error")
    assert PROTOCOLS["bsrt"].precision == "fp16"


def _two_copies(build):
    torch.manual_seed(8)
    a = build()
    torch.manual_seed(9)
    return a, build()


@pytest.mark.parametrize("arch, kwargs, wanted", [
    ("swinir", TINY_SWINIR, "params"),       # main_test_swinir.py: param_key_g = 'params' (classical SR)
    ("rrdb", {"in_nc": 3, "out_nc": 3, "num_filters": 8, "num_blocks": 1, "scale": 4}, "params"),  # BasicSR default
    ("nafnet", NAF_TINY, "params_ema"),      # the default row: the EMA copy
])
def test_file_with_params_and_params_ema_follows_the_official_test(tmp_path, arch, kwargs, wanted):
    from dpir.nets import build_network
    from dpir.official import load_official_network, rrdb_from_sequential

    p, ema = _two_copies(lambda: build_network(arch, **kwargs))

    def layout(m):
        return rrdb_from_sequential(m.state_dict()) if arch == "rrdb" else m.state_dict()

    path = tmp_path / "both.pth"
    torch.save({"params": layout(p), "params_ema": layout(ema)}, path)
    model, _ = load_official_network(arch, kwargs, path)
    assert same_weights(model, {"params": p, "params_ema": ema}[wanted])
    torch.save({"params_ema": layout(ema)}, path)                # only the other copy: that one
    assert same_weights(load_official_network(arch, kwargs, path)[0], ema)


def test_strict_networks_refuse_extra_and_missing_keys(tmp_path):
    from dpir.nets import build_network
    from dpir.official import load_official_network

    sd = build_network("nafnet", **NAF_TINY).state_dict()
    path = tmp_path / "naf.pth"
    torch.save({"params": {**sd, "extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(DpirError, match=r"naf\.pth does not fit NAFNet: unexpected keys: extra\.weight\."):
        load_official_network("nafnet", NAF_TINY, path)
    torch.save({"params": {k: v for k, v in sd.items() if k != "ending.bias"}}, path)
    with pytest.raises(DpirError, match=r"missing keys: ending\.bias\."):
        load_official_network("nafnet", NAF_TINY, path)


def test_diffir_lists_extra_keys_in_a_warning_and_refuses_missing_ones(staged, caplog):
    from baselines.diffir.nets import DiffIRS2
    from dpir.official import load_official_network

    kw = base_config(staged)["networks"]["diffir_s2"]["kwargs"]
    params, ema = _two_copies(lambda: DiffIRS2(**kw))
    path = staged / "DiffIRS2.pth"
    extra = {"net_d.conv0.weight": torch.zeros(2), "extra.bias": torch.ones(1)}
    torch.save({"params": params.state_dict(), "params_ema": {**ema.state_dict(), **extra}}, path)
    with caplog.at_level(logging.WARNING, logger="dpir.checkpoint"):
        model, _ = load_official_network("diffir_s2", kw, path)
    assert same_weights(model, ema)                           # param_key_g: params_ema
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"{path} does not fit DiffIRS2: unexpected keys (not loaded): extra.bias, net_d.conv0.weight"]
    state = ema.state_dict()
    state.pop(next(iter(state)))
    torch.save({"params_ema": state}, path)
    with pytest.raises(DpirError, match=r"DiffIRS2\.pth does not fit DiffIRS2: missing keys: "):
        load_official_network("diffir_s2", kw, path)


def test_ignore_policy_loads_silently_and_keeps_missing_parameters(caplog):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.Conv2d(2, 1, 1))
    init = {k: v.clone() for k, v in net.state_dict().items()}
    state = {"0.weight": torch.ones(2, 1, 1, 1), "0.bias": torch.zeros(2), "9.weight": torch.zeros(3)}
    with caplog.at_level(logging.DEBUG):
        left = load_state(net, state, "f.pth", unexpected="ignore", missing="ignore")
    assert not caplog.records
    assert left == {"unexpected": ["9.weight"], "missing": ["1.bias", "1.weight"]}
    assert torch.equal(net[0].weight, torch.ones(2, 1, 1, 1)) and torch.equal(net[1].weight, init["1.weight"])
    with pytest.raises(DpirError, match=r"wrong shapes: 0\.bias \(3,\) vs \(2,\)"):   # never a policy
        load_state(net, {**state, "0.bias": torch.zeros(3)}, "f.pth", unexpected="ignore", missing="ignore")
    with pytest.raises(ValueError, match="missing key policy must be one of"):
        load_state(net, state, "f.pth", missing="skip")


# ------------------------------------------------------------------------------------- precision

class Probe(torch.nn.Module):
    """A conv that records the autocast state it runs under (and so the dtype of its output)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.seen = []

    def forward(self, x):
        out = self.conv(x)
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out


def test_official_precision_runs_under_its_autocast_and_fp16_is_fp32_on_the_cpu():
    from dpir.methods.simple import Backbone, restore_padded
    from dpir.precision import network_precision

    # an official fp16 is a CUDA setting: fp32 on the CPU (bf16 there is 40x slower and rounds more)
    assert (network_precision("fp16", "cpu"), network_precision("fp16", "cuda"), network_precision(None, "cpu"),
            network_precision("bf16", "cpu")) == ("fp32", "fp16", "fp32", "bf16")
    net = Probe().eval()
    y = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        exact = net(y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expect = net(y).float()
        net.official_inference = {"precision": "fp16"}            # as load_network sets it for BSRT
        for out in (Backbone(net, 1, 1).restore(y), restore_padded(net, y, 1)):
            assert out.dtype == torch.float32 and torch.equal(out, exact)
        net.official_inference = {"precision": "bf16"}            # an official precision the CPU autocasts
        for out in (Backbone(net, 1, 1).restore(y), restore_padded(net, y, 1)):
            assert out.dtype == torch.float32 and torch.equal(out, expect) and not torch.equal(out, exact)
        # a config that sets the entry's precision takes over (restore's own autocast): no inner autocast
        assert torch.equal(Backbone(net, 1, 1, precision=None).restore(y), exact)
        assert torch.equal(restore_padded(net, y, 1, precision=None), exact)
    assert net.seen == [(False, torch.float32), (True, torch.bfloat16), (False, torch.float32), (False, torch.float32),
                        (True, torch.bfloat16), (True, torch.bfloat16), (False, torch.float32), (False, torch.float32)]


def test_backbone_entry_precision_overrides_the_official_one(tmp_path):
    from dpir.checkpoint import save_network
    from dpir.methods.base import BuildContext
    from dpir.methods.simple import backbone
    from dpir.nets import build_network

    naf = build_network("nafnet", **NAF_TINY)
    save_network(naf, tmp_path / "ir", "nafnet", NAF_TINY, official_inference={"precision": "fp16"})
    ctx = BuildContext("sr", {"kind": "deblur"}, str(tmp_path), torch.device("cpu"))
    assert backbone({"network": "ir"}, ctx).precision == "fp16"
    assert backbone({"network": "ir", "precision": "fp32"}, ctx).precision is None


def test_imported_bsrt_records_fp16(staged):
    from dpir.nets import build_network
    from dpir.official import import_official

    torch.manual_seed(11)
    ref = build_network("bsrt", **BSRT_TINY)
    path = staged / "bsrt_small.pth"
    torch.save(ref.state_dict(), path)
    cfg = base_config(staged, networks={"bsrt_burst": {"official": str(path), "kwargs": {**BSRT_TINY, "base_skip": False}}})
    folder = import_official(cfg, "bsrt_burst").parent
    meta = json.loads((folder / "model.json").read_text())
    assert meta["official_inference"]["precision"] == "fp16" and "pad_mode" not in meta["official_inference"]
    assert load_network(folder).official_inference["precision"] == "fp16"


def test_official_reference_on_the_meta_device_is_shape_only():
    from baselines.srdiff.sampler import lr_reference

    out = lr_reference(torch.empty(2, 3, 5, 7, device="meta"), 4, "official")
    assert out.device.type == "meta" and tuple(out.shape) == (2, 3, 20, 28)
