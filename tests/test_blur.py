"""Synthetic camera-shake blur (dpir.data.blur): kernel properties, convolution, noise, kernel files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpir.data.blur import (
    blur,
    centre_of_mass,
    load_kernel,
    make_blur_pair,
    motion_kernel,
    save_kernel,
)
from dpir.errors import DpirError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size,kw", [(9, {}), (15, {}), (15, {"exposure": 0.4}), (11, {"length": 40.0}),
                                     (21, {"anxiety": 0.005})])
def test_kernel_is_a_centred_probability_mass(size, kw):
    c = (size - 1) / 2
    for seed in range(4):
        k = motion_kernel(size, gen(seed), **kw)
        assert k.shape == (size, size) and k.dtype == torch.float32
        assert float(k.min()) >= 0.0
        assert abs(float(k.double().sum()) - 1.0) < 1e-6
        cy, cx = centre_of_mass(k)
        assert abs(cy - c) < 1e-5 and abs(cx - c) < 1e-5
        assert int((k > 0).sum()) > 1


def test_kernel_is_seeded():
    assert torch.equal(motion_kernel(15, gen(3)), motion_kernel(15, gen(3)))
    assert not torch.equal(motion_kernel(15, gen(3)), motion_kernel(15, gen(4)))


def test_zero_length_is_a_delta_and_zero_anxiety_a_straight_segment():
    k = motion_kernel(7, gen(0), length=0.0)
    assert float(k[3, 3]) == 1.0 and float(k.sum()) == 1.0
    # no shake: a straight path of length L, whose mass is uniform along it -> variance L^2/12 on its
    # axis; bilinear splatting adds at most 1/4 per axis.
    L = 10.0
    for seed in range(3):
        k = motion_kernel(15, gen(seed), length=L, anxiety=0.0).double()
        ys, xs = torch.meshgrid(torch.arange(15.0, dtype=torch.float64), torch.arange(15.0, dtype=torch.float64),
                                indexing="ij")
        d = torch.stack([ys - 7, xs - 7]).reshape(2, -1)
        cov = (d * k.reshape(1, -1)) @ d.T
        lo, hi = torch.linalg.eigvalsh(cov).tolist()
        assert L ** 2 / 12 - 1e-6 <= hi <= L ** 2 / 12 + 0.5
        assert lo <= 0.25


def test_kernel_argument_errors():
    with pytest.raises(DpirError, match="odd integer"):
        motion_kernel(8, gen(0))
    with pytest.raises(DpirError, match="exposure"):
        motion_kernel(9, gen(0), exposure=0.0)


def test_blur_matches_scipy_convolution_with_mirror_boundary():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(3, 20, 23, generator=gen(1))
    k = motion_kernel(9, gen(2))
    y = blur(x, k, 0.0, gen(0), clip=False)
    for c in range(3):
        ref = ndimage.convolve(x[c].double().numpy(), k.double().numpy(), mode="mirror")
        np.testing.assert_allclose(y[c].numpy(), ref, atol=1e-6)


def test_blur_is_a_true_convolution():
    x = torch.rand(3, 10, 12, generator=gen(5))
    k = torch.zeros(3, 3)
    k[1, 2] = 1.0      # the kernel's mass right of centre: convolution moves the image right by 1
    y = blur(x, k, 0.0, gen(0))
    assert torch.equal(y[:, :, 1:], x[:, :, :-1])
    d = torch.zeros(5, 5)
    d[2, 2] = 1.0
    assert torch.equal(blur(x, d, 0.0, gen(0)), x)


def test_constant_image_stays_constant_and_noise_has_the_configured_std():
    x = torch.full((3, 64, 64), 0.5)
    k = motion_kernel(15, gen(7))
    assert torch.allclose(blur(x, k, 0.0, gen(0)), x, atol=1e-6)
    sigma = 0.05
    y = blur(x, k, sigma, gen(8))
    n = (y - 0.5).flatten()
    assert abs(float(n.mean())) < 3 * sigma / np.sqrt(n.numel())
    assert abs(float(n.std()) / sigma - 1.0) < 0.03
    assert torch.equal(y, blur(x, k, sigma, gen(8)))
    # clipping to [0, 1] after the noise
    assert float(blur(torch.zeros(3, 16, 16), k, 0.1, gen(9)).min()) == 0.0
    assert float(blur(torch.zeros(3, 16, 16), k, 0.1, gen(9), clip=False).min()) < 0.0


def test_blur_input_errors():
    with pytest.raises(DpirError, match=r"too small for a 15x15 blur kernel"):
        blur(torch.rand(3, 6, 30), motion_kernel(15, gen(0)), 0.0, gen(0))
    with pytest.raises(DpirError, match=r"\(C,H,W\)"):
        blur(torch.rand(1, 3, 16, 16), motion_kernel(5, gen(0)), 0.0, gen(0))


def test_make_blur_pair_draws_kernel_then_noise():
    gt = torch.rand(3, 32, 32, generator=gen(0))
    cfg = {"kernel_size": 11, "noise_sigma": 0.01}
    y, k = make_blur_pair(gt, gen(42), cfg)
    g = gen(42)
    k2 = motion_kernel(11, g)
    assert torch.equal(k, k2)
    assert torch.equal(y, blur(gt, k2, 0.01, g))
    y3, k3 = make_blur_pair(gt, gen(43), cfg)
    assert not torch.equal(k3, k) and y3.shape == gt.shape
    # a length range is drawn per image, inside the range
    _, kr = make_blur_pair(gt, gen(1), {"kernel_size": 11, "length": [2.0, 3.0], "anxiety": 0.0})
    assert int((kr > 0).sum()) <= 12
    with pytest.raises(DpirError, match=r"unknown blur degradation key\(s\) \['sigma'\]"):
        make_blur_pair(gt, gen(0), {"kernel_size": 11, "sigma": 0.1})
    with pytest.raises(DpirError, match="needs `kernel_size`"):
        make_blur_pair(gt, gen(0), {"noise_sigma": 0.1})


def test_kernel_file_round_trip_and_errors(tmp_path):
    k = motion_kernel(13, gen(11))
    p = tmp_path / "kernels" / "0001.npy"
    save_kernel(p, k)
    back = load_kernel(p)
    assert torch.equal(back, k) and back.dtype == torch.float32
    with pytest.raises(DpirError, match=r"kernel files are \.npy"):
        save_kernel(tmp_path / "k.png", k)
    with pytest.raises(DpirError, match=r"missing\.npy is missing"):
        load_kernel(tmp_path / "missing.npy")
    np.save(tmp_path / "bad.npy", np.ones((3, 3), np.float32))
    with pytest.raises(DpirError, match="summing to 1"):
        load_kernel(tmp_path / "bad.npy")
    np.save(tmp_path / "even.npy", np.full((4, 4), 1 / 16, np.float32))
    with pytest.raises(DpirError, match="odd sides"):
        load_kernel(tmp_path / "even.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DpirError, match="not a readable"):
        load_kernel(tmp_path / "junk.npy")
