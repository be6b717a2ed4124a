"""Training loop (seeding, exact resume, checkpoints) and the restore/score stages."""
import json

import pytest
import torch
from torch import nn

from dpir import paths
from dpir.checkpoint import load_network, read_meta, save_network
from dpir.data.prepare import prepare
from dpir.errors import DpirError, UnknownNameError
from dpir.measure import count_flops, count_nfe, count_params
from dpir.methods.base import Method
from dpir.methods.simple import pad_to_multiple
from dpir.restore import merge_shards, restore_dataset
from dpir.score import score_run
from dpir.train.loop import train_network
from helpers import base_config

TINY_SWINIR = {"upscale": 4, "in_chans": 3, "img_size": 8, "window_size": 4, "img_range": 1.0, "depths": [1],
               "embed_dim": 8, "num_heads": [2], "mlp_ratio": 1.0, "upsampler": "pixelshuffledirect",
               "resi_connection": "1conv"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = base_config(tmp, device="cpu", threads=1,
                      networks={"swinir_sr": {"kwargs": TINY_SWINIR,
                                              "train": {"steps": 6, "batch": 2, "patch": 32, "checkpoint_every": 2}}})
    prepare(cfg, "sr", "bundled")
    return cfg


def weights(cfg, name="swinir_sr"):
    return load_network(paths.network_dir(cfg, name)).state_dict()


def test_training_is_seeded_and_resume_is_exact(prepared, tmp_path):
    cfg = prepared
    rec = train_network(cfg, "swinir_sr", progress=False)
    full = weights(cfg)
    meta = read_meta(paths.network_dir(cfg, "swinir_sr"))
    assert meta["arch"] == "swinir" and meta["kwargs"] == TINY_SWINIR and meta["step"] == 6
    assert rec["trained_params"] == sum(v.numel() for k, v in full.items() if "relative_position_index" not in k
                                        and "attn_mask" not in k) or rec["trained_params"] > 0
    # a second, interrupted-then-resumed run ends with bit-identical weights
    cfg2 = dict(cfg, out=str(tmp_path / "other"))
    stopped = train_network(cfg2, "swinir_sr", progress=False, stop_after=3)
    assert stopped == {"stopped_at": 3}
    assert (paths.network_dir(cfg2, "swinir_sr") / "state.pt").exists()
    assert not paths.network_file(cfg2, "swinir_sr").exists()
    rec2 = train_network(cfg2, "swinir_sr", progress=False)
    assert rec2["resumed_from"] == 3
    resumed = weights(cfg2)
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert not (paths.network_dir(cfg2, "swinir_sr") / "state.pt").exists()


def test_checkpoint_of_wrong_architecture_is_refused(tmp_path):
    save_network(nn.Conv2d(3, 3, 3), tmp_path / "net", "swinir", TINY_SWINIR)
    with pytest.raises(DpirError, match=r"does not fit SwinIR: missing keys: conv_after_body.*unexpected keys: bias, weight"):
        load_network(tmp_path / "net")
    with pytest.raises(DpirError, match="no trained network at"):
        load_network(tmp_path / "absent")
    save_network(nn.Conv2d(3, 3, 3), tmp_path / "c", "swinir", TINY_SWINIR)
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DpirError, match=r"cannot read .*model\.safetensors"):
        load_network(tmp_path / "c")


def test_restore_score_and_determinism(prepared):
    cfg = prepared
    if not paths.network_file(cfg, "swinir_sr").exists():
        train_network(cfg, "swinir_sr", progress=False)
    rec = restore_dataset(cfg, "sr", "bundled", "swinir", 0, progress=False)
    assert rec["nfe"] == 1 and rec["nfe_groups"] == {"ir": 1}
    assert rec["params_total"] == rec["params_trained"] > 0
    assert rec["flops_per_image"] > 0 and rec["flops_input_size"] == [16, 16]
    first = (paths.restored_dir(cfg, "sr", "bundled", "swinir", 0) / "astronaut.png").read_bytes()
    restore_dataset(cfg, "sr", "bundled", "swinir", 0, progress=False)
    assert (paths.restored_dir(cfg, "sr", "bundled", "swinir", 0) / "astronaut.png").read_bytes() == first
    scores = score_run(cfg, "sr", "bundled", "swinir", 0)
    assert set(scores["metrics"]) == set(cfg["tasks"]["sr"]["metrics"])
    psnr = scores["metrics"]["psnr_y"]
    assert psnr["available"] and set(psnr["per_image"]) == {"astronaut", "chelsea"}
    assert psnr["mean"] == pytest.approx(sum(psnr["per_image"].values()) / 2)
    stored = json.loads(paths.scores(cfg, "sr", "bundled", "swinir", 0).read_text())
    assert stored["provenance"]["seed"] == 0 and "git" in stored["provenance"]
    assert stored["scored_from"] == "8-bit PNG"
    bic = restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    assert bic["nfe"] == 0 and bic["flops_per_image"] is None


def test_sharding_does_not_change_results(prepared):
    cfg = prepared
    restore_dataset(cfg, "sr", "bundled", "bicubic", 1, progress=False)
    whole = {p.name: p.read_bytes() for p in paths.restored_dir(cfg, "sr", "bundled", "bicubic", 1).glob("*.png")}
    for k in range(2):
        restore_dataset(cfg, "sr", "bundled", "bicubic", 1, progress=False, shard=(k, 2))
    merged = merge_shards(cfg, "sr", "bundled", "bicubic", 1, 2)
    assert merged["images"] == ["astronaut", "chelsea"]
    again = {p.name: p.read_bytes() for p in paths.restored_dir(cfg, "sr", "bundled", "bicubic", 1).glob("*.png")}
    assert again == whole


def test_unknown_method_suggests(prepared):
    with pytest.raises(UnknownNameError, match=r"unknown method of task 'sr' 'swinr'\. Did you mean 'swinir'"):
        restore_dataset(prepared, "sr", "bundled", "swinr", 0, progress=False)


def test_failed_restore_keeps_finished_results(prepared, monkeypatch):
    cfg = prepared
    restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    out = paths.restored_dir(cfg, "sr", "bundled", "bicubic", 0)
    before = (out / "run.json").read_text()
    import dpir.restore as R

    def boom(*a, **k):
        raise DpirError("simulated failure while writing")
    monkeypatch.setattr(R, "write_png", boom)
    with pytest.raises(DpirError, match="simulated"):
        restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    assert (out / "run.json").read_text() == before


class Twice(Method):
    """Calls module a twice and b once per restore: NFE groups count calls, not formulas."""

    def __init__(self):
        self.a, self.b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def restore(self, y, generator=None):
        return self.b(self.a(self.a(y)))

    def modules(self):
        return {"a": self.a, "b": self.b}

    def nfe_groups(self):
        return {"step": [self.a, self.b]}


def test_nfe_flops_params_are_measured():
    m = Twice()
    with count_nfe(m) as c, count_flops() as f:
        m.restore(torch.rand(1, 3, 4, 5))
    assert c.by_group() == {"step": 2} and c.total == 2
    assert f.get_total_flops() == 3 * 2 * (3 * 3) * 4 * 5  # three 1x1 convs: 2 x MACs
    assert count_params(m.modules()) == 2 * (9 + 3)
    assert count_params({"x": m.a, "y": m.a}) == 12  # shared modules count once


def test_tiny_images_are_padded():
    y = torch.rand(1, 3, 3, 5)
    p, (h, w) = pad_to_multiple(y, 8)
    assert p.shape[-2:] == (8, 8) and (h, w) == (3, 5) and torch.equal(p[..., :3, :5], y)


def test_per_call_flops_sums_each_module_of_a_group_once():
    from dpir.tflops import per_call_flops

    m = Twice()
    per = per_call_flops(m, torch.rand(1, 3, 4, 5))
    # one call of a (counted once although called twice per restore) + one call of b: 2 convs
    assert per == {"step": 2 * 2 * 9 * 4 * 5}


def test_fftformer_pads_to_32_and_crops():
    from dpir.nets import build_network

    m = build_network("fftformer", inp_channels=3, out_channels=3, dim=8, num_blocks=[1, 1, 1],
                      num_refinement_blocks=1, ffn_expansion_factor=2, bias=False).eval()
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        out = m(x)
        padded = torch.nn.functional.pad(x, (0, 24, 0, 16), mode="reflect")
        ref = type(m).__mro__[1].forward(m, padded)[..., :48, :40]
    assert out.shape == x.shape and torch.equal(out, ref)


def test_tflops_table_reuses_per_call_costs_of_shared_networks(monkeypatch, prepared):
    """DP-IR variants built from the same networks are measured at full size once."""
    import dpir.tflops as T

    calls = []
    monkeypatch.setattr(T, "per_call_flops", lambda m, y: calls.append(1) or {g: 10 for g in m.nfe_groups()})
    cfg = prepared
    if not paths.network_file(cfg, "swinir_sr").exists():
        train_network(cfg, "swinir_sr", progress=False)
    rows = T.tflops_table(cfg, "sr", 64, 32, methods=["swinir", "swinir"])
    assert len(rows) == 2 and len(calls) == 1 and rows[0]["total_tflops"] == 10 / 1e12


def test_full_size_costs_are_counted_on_meta_as_a_real_forward_counts_them(prepared):
    """`dpir tflops` counts each group at 1280x720 on META (a paper-size network on the CPU took minutes):
    the count equals FlopCounterMode's on a real forward of the trained network."""
    from dpir.restore import build
    from dpir.tflops import full_size_per_call_flops, per_call_flops

    cfg = prepared
    if not paths.network_file(cfg, "swinir_sr").exists():
        train_network(cfg, "swinir_sr", progress=False)
    real, _, _, _ = build(cfg, "sr", "swinir")
    expected = per_call_flops(real, torch.rand(1, 3, 24, 40))
    assert expected["ir"] > 0
    assert full_size_per_call_flops(cfg, "sr", "swinir", 24, 40) == expected


def test_tflops_call_counts_on_meta_equal_the_real_methods(prepared):
    """`dpir tflops` counts each NFE group's calls on a META copy of the method (a 1001-step chain of the
    real networks took most of the default config's SR job): the same counts as the real method."""
    from dpir.measure import count_nfe
    from dpir.restore import build
    from dpir.tflops import meta_call_counts

    cfg = prepared
    for net in ("swinir_sr", "mirnet_s", "fusion_sr", "mirnet_full", "fusion_full", "srdiff_rrdb", "srdiff", "indi"):
        if not paths.network_file(cfg, net).exists():
            train_network(cfg, net, progress=False)
    for name in ("swinir", "dpir_jump", "dpir_jump_ddim", "dpir_full", "srdiff", "indi"):
        m = build(cfg, "sr", name)[0]
        with torch.no_grad(), count_nfe(m) as c:
            m.restore(torch.rand(1, 3, 16, 16), [torch.Generator().manual_seed(0)])
        got = meta_call_counts(cfg, "sr", name)
        assert got == c.by_group() and sum(got.values()) == c.total, name
    assert meta_call_counts(cfg, "sr", "dpir_full") == {"denoiser+fusion": 100, "ir": 1}
