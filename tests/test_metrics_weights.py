"""Metrics that need weights (LPIPS, TOPIQ): the offline availability check and its error, and the
real loading path run on checkpoints of the right shape written by the test into a temporary
TORCH_HOME (random weights: the scores are not meaningful, the loading and calling are)."""
from __future__ import annotations

import functools
import os
import socket

import pytest
import torch

from dpir.errors import DpirError, MetricUnavailable
from dpir.metrics import get_metric
from dpir.metrics.weights import WEIGHTS


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch, tmp_path):
    """An empty torch hub cache, and any network connection fails at once instead of hanging."""
    def refuse(*args, **kwargs):
        raise OSError("test: network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors on a shared 2-core machine
    yield tmp_path / "torch" / "hub"
    torch.set_num_threads(n)


def images(b=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(b, 3, size, size, generator=g)
    ref = torch.nn.functional.avg_pool2d(ref, 5, 1, 2)  # some spatial structure
    out = ((ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1) * 255).round() / 255
    return out, (ref * 255).round() / 255


# ---------------------------------------------------------------------------------------------
# availability


@pytest.mark.parametrize("name, weights, file", [
    ("lpips_alex", "lpips_alex", "checkpoints/alexnet-owt-7be5be79.pth"),
    ("topiq_nr", "topiq_nr", "pyiqa/cfanet_nr_koniq_res50-9a73138b.pth"),
    ("topiq_delta", "topiq_nr", "pyiqa/cfanet_nr_koniq_res50-9a73138b.pth"),
    ("topiq_fr", "topiq_fr", "pyiqa/cfanet_fr_kadid_res50-2c4cc61d.pth"),
])
def test_missing_weights_raise_with_fix(offline_cache, name, weights, file):
    m = get_metric(name)
    assert m.needs_weights and m.weights == (weights,)
    with pytest.raises(MetricUnavailable) as e:
        m.check_available()
    expected = offline_cache / file
    assert e.value.metric == name and e.value.fix == f"dpir fetch {weights}"
    assert str(expected) in e.value.reason and "missing" in e.value.reason
    assert str(e.value).endswith(f"Fix: dpir fetch {weights}")
    # scoring raises the same error; it never tries to download
    out, ref = images(1, 32)
    with pytest.raises(MetricUnavailable):
        m(out, ref)
    assert not expected.exists()


@pytest.mark.parametrize("name", ["psnr_y", "ssim_rgb", "gmsd", "nlpd", "ms_ssim", "fsim", "vif"])
def test_weight_free_always_available(name):
    m = get_metric(name)
    assert not m.needs_weights and m.weights == ()
    m.check_available()


# ---------------------------------------------------------------------------------------------
# LPIPS


def write_alexnet(hub):
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = hub / WEIGHTS["lpips_alex"].relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state, path


def test_lpips_loads_cached_alexnet(offline_cache):
    import lpips

    state, _ = write_alexnet(offline_cache)
    m = get_metric("lpips_alex")
    m.check_available()
    out, ref = images()
    s1, s2 = m(out, ref), m(out, ref)
    assert s1.shape == (2,) and s1.dtype == torch.float64 and torch.isfinite(s1).all() and (s1 > 0).all()
    assert torch.equal(s1, s2)  # eval mode: the dropout before the linear layers is off
    assert torch.equal(m(ref, ref), torch.zeros(2, dtype=torch.float64))
    net = m._net
    assert not net.training and not any(mod.training for mod in net.modules())
    # the trunk is the cached file's AlexNet: features.<i> -> slice<k>.<i>
    for k, i in [(1, 0), (2, 3), (3, 6), (4, 8), (5, 10)]:
        conv = getattr(net.net, f"slice{k}")._modules[str(i)]
        assert torch.equal(conv.weight, state[f"features.{i}.weight"]), (k, i)
        assert torch.equal(conv.bias, state[f"features.{i}.bias"]), (k, i)
    # the linear layers are the wheel's v0.1 calibration
    lin = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                     map_location="cpu", weights_only=True)
    assert torch.equal(net.lin0.model[1].weight, lin["lin0.model.1.weight"])
    assert net.version == "0.1" and net.pnet_type == "alex"
    # lpips' own call with normalize=True on [0,1] inputs gives the same numbers
    assert torch.allclose(net(out, ref, normalize=True).flatten().double(), s1, rtol=0, atol=0)


def test_lpips_rejects_a_wrong_file(offline_cache):
    path = offline_cache / WEIGHTS["lpips_alex"].relpath
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>not a checkpoint</html>")
    out, ref = images(1, 32)
    with pytest.raises(DpirError, match=r"cannot read .*alexnet-owt-7be5be79\.pth.*dpir fetch lpips_alex"):
        get_metric("lpips_alex")(out, ref)
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(DpirError, match=r"is not torchvision's AlexNet state dict.*dpir fetch lpips_alex"):
        get_metric("lpips_alex")(out, ref)


# ---------------------------------------------------------------------------------------------
# TOPIQ


@functools.cache
def random_cfanet_state(pyiqa_name: str) -> dict[str, torch.Tensor]:
    """The state dict of pyiqa's CFANet for ``pyiqa_name`` built without any pretrained weights."""
    from pyiqa.archs.topiq_arch import CFANet
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    opts = dict(DEFAULT_CONFIGS[pyiqa_name]["metric_opts"])
    opts.pop("type")
    torch.manual_seed(1)
    net = CFANet(**opts, pretrained=False, backbone_pretrain=False)
    return {k: v.clone() for k, v in net.state_dict().items()}


def write_cfanet(hub, name):
    state = random_cfanet_state(name)
    path = hub / WEIGHTS[name].relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": state}, path)  # pyiqa's checkpoint layout
    return state, path


@pytest.mark.slow
def test_weights_table_matches_pyiqa():
    from pyiqa.archs.topiq_arch import default_model_urls
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name in ("topiq_nr", "topiq_fr"):
        ckpt = DEFAULT_CONFIGS[name]["metric_opts"]["model_name"]
        # the same file pyiqa itself would fetch, cached where pyiqa would cache it
        assert WEIGHTS[name].url == default_model_urls[ckpt]
        assert WEIGHTS[name].relpath == "pyiqa/" + default_model_urls[ckpt].rsplit("/", 1)[1]


@pytest.mark.slow
def test_topiq_loads_cached_checkpoints(offline_cache):
    nr_state, _ = write_cfanet(offline_cache, "topiq_nr")
    fr_state, _ = write_cfanet(offline_cache, "topiq_fr")
    out, ref = images(2, 64)
    nr, delta, fr = get_metric("topiq_nr"), get_metric("topiq_delta"), get_metric("topiq_fr")
    for m in (nr, delta, fr):
        m.check_available()

    s_out, s_ref = nr(out), nr(ref, None)
    assert s_out.shape == (2,) and s_out.dtype == torch.float64 and torch.isfinite(s_out).all()
    assert torch.equal(nr(out, ref), s_out)  # a no-reference metric ignores ref
    assert torch.equal(nr(out), s_out)       # eval mode: dropout off, two calls agree
    d = delta(out, ref)
    assert torch.equal(d, (s_out - s_ref).abs())
    assert torch.equal(delta(ref, ref), torch.zeros(2, dtype=torch.float64))
    f = fr(out, ref)
    assert f.shape == (2,) and torch.isfinite(f).all() and torch.equal(fr(out, ref), f)

    # the networks hold the files' weights, backbone included (not an ImageNet or random backbone)
    for m, state in ((nr, nr_state), (fr, fr_state)):
        net = m._model.net
        assert not net.training
        own = net.state_dict()
        for key in ("semantic_model.conv1.weight", "semantic_model.layer4.2.conv3.weight", "score_linear.6.weight", "h_emb"):
            assert torch.equal(own[key], state[key]), key
    assert delta._model is nr._model  # one network for topiq_nr and topiq_delta


@pytest.mark.slow
def test_topiq_rejects_incomplete_checkpoint(offline_cache):
    state = dict(random_cfanet_state("topiq_nr"))
    del state["semantic_model.conv1.weight"]  # e.g. a head-only file: the backbone would stay random
    path = offline_cache / WEIGHTS["topiq_nr"].relpath
    path.parent.mkdir(parents=True)
    torch.save({"params": state}, path)
    out, _ = images(1, 32)
    missing = r"does not fit pyiqa's CFANet \(missing: \['semantic_model\.conv1\.weight'\].*dpir fetch topiq_nr"
    with pytest.raises(DpirError, match=missing):
        get_metric("topiq_nr")(out)
