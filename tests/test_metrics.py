"""Metric presets: hand-computed PSNR/SSIM values, the BT.601 Y transform, border cropping, agreement
with scikit-image and pyiqa, the registry's errors, and the weight-free pyiqa metrics offline."""
from __future__ import annotations

import functools
import math
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpir.errors import DpirError, UnknownNameError
from dpir.metrics import METRICS, OFFLINE_PERCEPTUAL, Metric, evaluate, get_metric
from dpir.metrics.pixel import rgb_to_y

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
Y_SUM = 65.481 + 128.553 + 24.966  # = 219, the span of the studio-range luma


def const(levels, h=24, w=24, b=1):
    """(b, 3, h, w) image with constant 8-bit RGB ``levels``."""
    return (torch.tensor(levels, dtype=torch.float32) / 255).view(1, 3, 1, 1).expand(b, 3, h, w).clone()



@functools.lru_cache(maxsize=1)
def _astronaut() -> torch.Tensor:
    from skimage.data import astronaut

    return torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 255


def quantise(x):
    return (x.clamp(0, 1) * 255).round() / 255


def astronaut_pair(size=96, top=100, left=160, noise=0.03, blur=True, seed=0):
    """A natural-image crop and a blurred + noisy, 8-bit quantised version of it."""
    ref = _astronaut()[..., top:top + size, left:left + size].clone()
    out = ref
    if blur:
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None, :] / 256).expand(3, 1, 5, 5)
        out = F.conv2d(F.pad(out, (2, 2, 2, 2), mode="reflect"), k, groups=3)
    g = torch.Generator().manual_seed(seed)
    out = quantise(out + noise * torch.randn(out.shape, generator=g))
    return out, ref


def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("test: network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------------------------------------
# the Y transform


@pytest.mark.parametrize("rgb, y", [
    ((255, 0, 0), 16 + 65.481),
    ((0, 255, 0), 16 + 128.553),
    ((0, 0, 255), 16 + 24.966),
    ((255, 255, 255), 235.0),
    ((0, 0, 0), 16.0),
])
def test_y_of_primaries(rgb, y):
    out = rgb_to_y(const(rgb, 2, 3))
    assert out.shape == (1, 1, 2, 3) and out.dtype == torch.float64
    assert torch.allclose(out, torch.full_like(out, y), rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# PSNR


@pytest.mark.parametrize("d", [1, 2, 17])
def test_psnr_constant_offset(d):
    a, b = const((100, 120, 140)), const((100 + d, 120 + d, 140 + d))
    # RGB: every value is d levels off, MSE = d^2
    assert get_metric("psnr_rgb")(a, b).item() == pytest.approx(20 * math.log10(255 / d), abs=1e-9)
    # Y: the luma differs by d * 219 / 255 levels
    assert get_metric("psnr_y")(a, b).item() == pytest.approx(20 * math.log10(255 / (d * Y_SUM / 255)), abs=1e-9)


def test_psnr_single_pixel():
    a = const((0, 0, 0), 8, 10)
    b = a.clone()
    b[0, 0, 3, 4] = 1.0  # one red value off by 255: RGB MSE = 255^2 / (3 * 80)
    assert get_metric("psnr_rgb")(a, b).item() == pytest.approx(10 * math.log10(3 * 80), abs=1e-9)
    # Y: one pixel off by 65.481 levels out of 80
    assert get_metric("psnr_y")(a, b).item() == pytest.approx(10 * math.log10(255 ** 2 * 80 / 65.481 ** 2), abs=1e-9)


def test_psnr_identical_is_inf_and_per_image():
    x, _ = astronaut_pair(32)
    batch = torch.cat([x, quantise(x * 0.9)])
    scores = get_metric("psnr_y")(batch, torch.cat([x, x]))
    assert scores.shape == (2,) and scores.dtype == torch.float64
    assert math.isinf(scores[0].item()) and scores[0] > 0
    assert math.isfinite(scores[1].item())
    assert math.isinf(get_metric("psnr_rgb")(x, x).item())


# ---------------------------------------------------------------------------------------------
# SSIM


@pytest.mark.parametrize("name", ["ssim_y", "ssim_rgb"])
def test_ssim_identical_is_one(name):
    x, _ = astronaut_pair(40)
    assert get_metric(name)(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_closed_form():
    # constant images: zero variances, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) (Wang et al. 2004, Eq. 13)
    a_rgb, b_rgb = (50, 80, 200), (60, 90, 180)
    A, B = const(a_rgb, 16, 20), const(b_rgb, 16, 20)
    ssim_rgb = np.mean([(2 * p * q + C1) / (p * p + q * q + C1) for p, q in zip(a_rgb, b_rgb, strict=True)])
    assert get_metric("ssim_rgb")(A, B).item() == pytest.approx(ssim_rgb, abs=1e-12)
    ya, yb = (16 + np.dot((65.481, 128.553, 24.966), np.array(v) / 255) for v in (a_rgb, b_rgb))
    assert get_metric("ssim_y")(A, B).item() == pytest.approx((2 * ya * yb + C1) / (ya ** 2 + yb ** 2 + C1), abs=1e-12)


def test_ssim_too_small_after_crop():
    x = const((1, 2, 3), 20, 20)
    with pytest.raises(DpirError, match="at least 11x11"):
        get_metric("ssim_y", crop_border=5)(x, x)


# ---------------------------------------------------------------------------------------------
# border crop


@pytest.mark.parametrize("name, perfect", [("psnr_y", math.inf), ("psnr_rgb", math.inf),
                                           ("ssim_y", 1.0), ("ssim_rgb", 1.0)])
def test_crop_border_removes_exactly_the_border(name, perfect):
    ref, _ = astronaut_pair(32)
    out = ref.clone()
    # errors only in the 4-pixel frame
    out[..., :4, :] = 1 - out[..., :4, :]
    out[..., -4:, 5:9] = 0.0
    out[..., 10:20, :4] = 1.0
    out[..., 7, -4] = 1 - out[..., 7, -4]
    assert get_metric(name, crop_border=4)(out, ref).item() == pytest.approx(perfect, abs=1e-12)
    for crop in (0, 3):  # one pixel less and the error is still seen
        s = get_metric(name, crop_border=crop)(out, ref).item()
        assert math.isfinite(s) and s < perfect - 1e-6


def test_crop_too_large_and_bad_crop():
    x = const((1, 2, 3), 8, 8)
    with pytest.raises(DpirError, match="crop_border=4 leaves nothing of a 8x8 image"):
        get_metric("psnr_y", crop_border=4)(x, x)
    for bad in (-1, 2.0, True):
        with pytest.raises(DpirError, match="non-negative integer"):
            get_metric("psnr_y", crop_border=bad)


# ---------------------------------------------------------------------------------------------
# independent implementations


@pytest.mark.parametrize("crop", [0, 4])
@pytest.mark.parametrize("seed, noise, blur", [(0, 0.02, True), (1, 0.06, False), (2, 0.0, True)])
def test_agrees_with_skimage(crop, seed, noise, blur):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out, ref = astronaut_pair(80, top=150 + 20 * seed, left=180, noise=noise, blur=blur, seed=seed)
    sl = slice(crop, 80 - crop) if crop else slice(None)

    def rgb_np(x):  # the uint8 PNG's values, as float64 (H, W, 3)
        return np.round(x[0].permute(1, 2, 0).double().numpy() * 255)[sl, sl]

    def y_np(x):  # MATLAB rgb2ycbcr's Y on those values, unrounded as in BasicSR
        return 16 + rgb_np(x) @ np.array([65.481, 128.553, 24.966]) / 255

    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    # tolerance: both are float64 on the same numbers; only summation order differs
    assert get_metric("psnr_y", crop_border=crop)(out, ref).item() == pytest.approx(
        peak_signal_noise_ratio(y_np(ref), y_np(out), data_range=255), abs=1e-9)
    assert get_metric("psnr_rgb", crop_border=crop)(out, ref).item() == pytest.approx(
        peak_signal_noise_ratio(rgb_np(ref), rgb_np(out), data_range=255), abs=1e-9)
    # skimage filters with reflect padding and then drops 5 pixels per side: the 'valid' region
    assert get_metric("ssim_y", crop_border=crop)(out, ref).item() == pytest.approx(
        structural_similarity(y_np(out), y_np(ref), **kw), abs=1e-9)
    assert get_metric("ssim_rgb", crop_border=crop)(out, ref).item() == pytest.approx(
        structural_similarity(rgb_np(out), rgb_np(ref), channel_axis=2, **kw), abs=1e-9)


@pytest.mark.slow
def test_agrees_with_pyiqa(monkeypatch):
    no_network(monkeypatch)
    import pyiqa

    pairs = [astronaut_pair(96, top=60 + 40 * s, left=150, noise=0.01 + 0.02 * s, seed=s) for s in range(3)]
    out, ref = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    for crop in (0, 4):
        theirs = {
            "psnr_y": pyiqa.create_metric("psnr", device="cpu", test_y_channel=True, color_space="ycbcr", crop_border=crop),
            "psnr_rgb": pyiqa.create_metric("psnr", device="cpu", test_y_channel=False, crop_border=crop),
            "ssim_y": pyiqa.create_metric("ssim", device="cpu", test_y_channel=True, color_space="ycbcr", crop_border=crop),
            "ssim_rgb": pyiqa.create_metric("ssimc", device="cpu", crop_border=crop),
        }
        # Measured: PSNR differs by <= 6e-5 dB (pyiqa: float32 on [0, 1], eps 1e-8 in the MSE); RGB SSIM
        # by <= 5e-7 (float32).  pyiqa's SSIM rounds Y to integers (MATLAB on uint8) where we keep the
        # BT.601 Y unrounded as BasicSR does: Y-SSIM differs by up to 1.0e-3 on these images.
        tol = {"psnr_y": 2e-4, "psnr_rgb": 2e-4, "ssim_y": 2e-3, "ssim_rgb": 2e-6}
        for name, metric in theirs.items():
            ours = get_metric(name, crop_border=crop)(out, ref)
            ref_scores = metric(out, ref).double().flatten()
            assert torch.allclose(ours, ref_scores, rtol=0, atol=tol[name]), (name, crop, ours, ref_scores)


# ---------------------------------------------------------------------------------------------
# registry and contract


EXPECTED = {  # name: (lower_better, needs_reference, needs_weights)
    "psnr_y": (False, True, False), "psnr_rgb": (False, True, False),
    "ssim_y": (False, True, False), "ssim_rgb": (False, True, False),
    "lpips_alex": (True, True, True),
    "topiq_nr": (False, False, True), "topiq_delta": (True, True, True), "topiq_fr": (False, True, True),
    "gmsd": (True, True, False), "nlpd": (True, True, False), "ms_ssim": (False, True, False),
    "fsim": (False, True, False), "vif": (False, True, False),
}


def test_registry_attributes():
    assert set(METRICS) == set(EXPECTED)
    for name, (lower, needs_ref, needs_w) in EXPECTED.items():
        m = get_metric(name)
        assert isinstance(m, Metric) and m.name == name
        assert (m.lower_better, m.needs_reference, m.needs_weights) == (lower, needs_ref, needs_w), name
        assert isinstance(m.convention, str) and "\n" not in m.convention
        assert m.convention.endswith("border crop 0")
        assert get_metric(name, crop_border=2).options == {"crop_border": 2}
    assert OFFLINE_PERCEPTUAL in METRICS and not get_metric(OFFLINE_PERCEPTUAL).needs_weights


def test_convention_strings():
    assert get_metric("psnr_y", crop_border=4).convention == (
        "PSNR on Y of BT.601 YCbCr (16-235, unrounded), 8-bit levels (peak 255), float64, +inf if identical, border crop 4")
    assert get_metric("ssim_rgb").convention == (
        "SSIM on RGB, 8-bit levels (L=255), 11x11 Gaussian window sigma 1.5, K1=0.01 K2=0.03, 'valid' filtering, "
        "mean over channels (MATLAB/BasicSR), border crop 0")


def test_unknown_name_and_option():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'psnr_yy'\. Did you mean 'psnr_y'"):
        get_metric("psnr_yy")
    with pytest.raises(DpirError, match=r"metric 'psnr_y' has no option 'crop'; it accepts: crop_border"):
        get_metric("psnr_y", crop=4)


def test_bad_inputs():
    m = get_metric("psnr_y")
    x = const((1, 2, 3))
    with pytest.raises(ValueError, match="needs a reference"):
        m(x, None)
    with pytest.raises(ValueError, match="differ in shape"):
        m(x, x[..., :-1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        m(x * 300, x)
    with pytest.raises(ValueError, match=r"float RGB tensor \(B, 3, H, W\)"):
        m(x[:, :1], x[:, :1])
    with pytest.raises(ValueError, match=r"float RGB tensor"):
        m((x * 255).to(torch.uint8), x)


def test_batch_and_dtype_independence():
    pairs = [astronaut_pair(48, top=50 * s, left=200, seed=s) for s in range(3)]
    out, ref = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    for name in ("psnr_y", "psnr_rgb", "ssim_y", "ssim_rgb"):
        m = get_metric(name, crop_border=2)
        batch = m(out, ref)
        single = torch.cat([m(o[None], r[None]) for o, r in zip(out, ref, strict=True)])
        assert torch.equal(batch, single), name
        # float64 inputs hold the same 8-bit values: same scores
        assert torch.allclose(m(out.double(), ref.double()), batch, rtol=0, atol=1e-9), name
    scores = evaluate([get_metric("psnr_y"), get_metric("ssim_y")], out, ref)
    assert list(scores) == ["psnr_y", "ssim_y"] and scores["ssim_y"].shape == (3,)


def test_scores_the_8bit_levels():
    # values within half a level of the same 8-bit value are the same PNG: PSNR inf, SSIM 1
    ref, _ = astronaut_pair(24)
    jitter = (ref + 0.3 / 255 * (2 * torch.rand(ref.shape, generator=torch.Generator().manual_seed(3)) - 1)).clamp(0, 1)
    assert not torch.equal(jitter, ref)
    assert math.isinf(get_metric("psnr_rgb")(jitter, ref).item())
    assert get_metric("ssim_y")(jitter, ref).item() == 1.0


def test_import_is_lazy():
    code = ("import sys, dpir.metrics as m; m.get_metric('lpips_alex'); m.get_metric('topiq_nr'); m.get_metric('gmsd'); "
            "print(sorted(k for k in ('pyiqa', 'lpips', 'timm', 'torchvision') if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# weight-free perceptual metrics (pyiqa, offline)


def test_gmsd_equals_pyiqa_and_needs_no_pyiqa_import():
    """``gmsd`` is computed by dpir (pyiqa's import costs seconds per score process) and must equal pyiqa's
    'gmsd' preset: same luma rounding, downsampling, Prewitt kernels, T and Bessel-corrected std."""
    pyiqa = pytest.importorskip("pyiqa")
    theirs = pyiqa.create_metric("gmsd", as_loss=False, device=torch.device("cpu")).eval()
    ref = astronaut_pair(64, top=40, left=160)[1]
    pairs = [(ref, ref)]
    pairs += [(astronaut_pair(64, top=40, left=160, noise=n, blur=b, seed=1)[0], ref) for n, b in ((0.02, False), (0.08, True))]
    g = torch.Generator().manual_seed(3)
    pairs.append((quantise(torch.rand(2, 3, 33, 35, generator=g)), quantise(torch.rand(2, 3, 33, 35, generator=g))))  # odd sizes
    m = get_metric("gmsd")
    for out, r in pairs:
        ours = m(out, r)
        assert torch.equal(ours, theirs(out.float(), r.float()).double().flatten()), (ours, out.shape)
    assert m(pairs[0][0], pairs[0][1]).tolist() == [0.0]
    assert m(*pairs[2]).item() > m(*pairs[1]).item() > 0
    code = ("import sys, torch; from dpir.metrics import get_metric; x = torch.rand(1, 3, 32, 32); "
            "get_metric('gmsd')(x, x.flip(-1)); print(sorted(k for k in ('pyiqa', 'torchvision') if k in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.slow
def test_weight_free_metrics_offline(monkeypatch, tmp_path):
    no_network(monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing to read, nothing to fetch
    ref = astronaut_pair(176, top=40, left=160)[1]
    mild = astronaut_pair(176, top=40, left=160, noise=0.02, blur=False, seed=1)[0]
    strong = astronaut_pair(176, top=40, left=160, noise=0.08, blur=True, seed=1)[0]
    best = {"gmsd": 0.0, "nlpd": 0.0, "ms_ssim": 1.0, "fsim": 1.0, "vif": 1.0}
    for name, b in best.items():
        m = get_metric(name)
        m.check_available()
        s = m(torch.cat([ref, mild, strong]), ref.expand(3, -1, -1, -1))
        assert s.shape == (3,) and s.dtype == torch.float64 and torch.isfinite(s).all(), name
        assert s[0].item() == pytest.approx(b, abs=1e-5), name  # float32 inside pyiqa
        worse = s[2] > s[1] > s[0] if m.lower_better else s[2] < s[1] < s[0]
        assert worse, (name, s)
    with pytest.raises(DpirError, match="at least 176x176"):
        get_metric("ms_ssim")(ref[..., :100, :100], ref[..., :100, :100])
