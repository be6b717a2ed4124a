"""The burst JDD-SR task end to end: prepare (SyntheticBurst layout + sRGB targets), on-the-fly training
bursts, the three Table 1 methods (single frame, BSRT, DP-IR tau=5), the CLI stages, and bad bursts."""
import copy
import json
import shutil

import numpy as np
import pytest
import torch

from dpir import paths
from dpir.cli import main as cli
from dpir.data.burst import demosaic_bilinear, process_linear_to_srgb, synthesize_burst
from dpir.data.burst_io import list_bursts, read_burst
from dpir.data.degrade import bicubic_resize
from dpir.data.images import read_image
from dpir.data.patches import PatchSampler
from dpir.data.prepare import load_split, prepare
from dpir.errors import DpirError
from dpir.measure import count_nfe
from dpir.methods.burst import srgb_batch
from dpir.restore import build, restore_dataset
from dpir.rng import make_generator
from dpir.tasks import DATA_SEED, burst_settings, train_degradation, train_margin
from dpir.train.loop import train_network
from helpers import base_config, write_yaml

CROP = 32          # gt 32x32, frames 4x4: the smallest size BSRT's pyramid takes
N = 14


def tiny(tmp):
    cfg = base_config(tmp, device="cpu", threads=1)
    cfg["datasets"]["bundled"].update(test_crop=CROP, max_test_images=2)
    cfg["tasks"]["burst"]["metrics"] = ["psnr_rgb", "ssim_rgb"]   # no downloadable weights needed
    return cfg


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("burst"))
    man = prepare(cfg, "burst", "bundled")
    return cfg, man


@pytest.fixture(scope="module")
def trained(prepared):
    cfg, _ = prepared
    prepare(cfg, "sr", "bundled", splits=("train",))   # the shared denoiser trains on the sr task's images
    for net in ("bsrt_burst", "mirnet_s"):
        train_network(cfg, net, progress=False)
    return cfg


def test_prepare_layout_srgb_target_and_determinism(prepared, tmp_path):
    cfg, man = prepared
    root = paths.prepared(cfg, "burst", "bundled")
    ids = man["splits"]["test"]["ids"]
    assert man["kind"] == "burst" and len(ids) == 2
    samples = list_bursts(root / "test" / "burst", N)
    assert [s.id for s in samples] == ids
    assert not (root / "test" / "lq").exists() and not (root / "train" / "burst").exists()
    assert sorted(p.name for p in (root / "test" / "burst" / "bursts" / ids[0]).iterdir()) == \
        [f"im_raw_{i:02d}.png" for i in range(N)]
    for s in samples:
        frames, gt_linear, meta = read_burst(s)
        assert frames.shape == (N, 4, CROP // 8, CROP // 8) and gt_linear.shape == (3, CROP, CROP)
        assert man["splits"]["test"]["sizes"][s.id] == [CROP, CROP]
        # gt/<id>.png is the 8-bit forward ISP of the linear ground truth with the burst's own metadata
        srgb = read_image(root / "test" / "gt" / f"{s.id}.png")
        assert srgb.shape == (3, CROP, CROP)
        assert (srgb - process_linear_to_srgb(gt_linear, meta)).abs().max() < 1.5 / 255
    # the stored burst is the one drawn from the generator seeded by (DATA_SEED, id) on the centre crop
    (_, _, train_gt), *_ = load_split(cfg, "burst", "bundled", "train")
    assert train_gt.shape[0] == 3 and min(train_gt.shape[-2:]) > 100   # train: whole sRGB images, no bursts
    # determinism: a second preparation writes the same bytes
    cfg2 = copy.deepcopy(cfg)
    cfg2["data_dir"] = str(tmp_path / "again")
    prepare(cfg2, "burst", "bundled", splits=("test",))
    root2 = paths.prepared(cfg2, "burst", "bundled")
    files = sorted(p.relative_to(root / "test") for p in (root / "test").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(root2 / "test") for p in (root2 / "test").rglob("*") if p.is_file())
    assert all((root / "test" / f).read_bytes() == (root2 / "test" / f).read_bytes() for f in files)


def test_stored_burst_matches_its_seeded_synthesis(prepared):
    from dpir.data import bundled

    cfg, man = prepared
    task = cfg["tasks"]["burst"]
    image_id = man["splits"]["test"]["ids"][0]
    rgb = torch.from_numpy(bundled.load(image_id).astype(np.float32) / 255).permute(2, 0, 1)
    m = train_margin(task)
    assert m == 24
    H, W = rgb.shape[-2:]
    top, left = (H - CROP - 2 * m) // 2, (W - CROP - 2 * m) // 2
    n, opts = burst_settings(task)
    frames, gt_linear, _ = synthesize_burst(rgb[:, top: top + CROP + 2 * m, left: left + CROP + 2 * m], n,
                                            make_generator(DATA_SEED, image_id), opts)
    stored, stored_gt, _ = read_burst(list_bursts(paths.prepared(cfg, "burst", "bundled") / "test" / "burst")[0])
    assert (stored - frames).abs().max() <= 0.5 / 2 ** 14 + 1e-6
    assert (stored_gt - gt_linear).abs().max() <= 0.5 / 2 ** 14 + 1e-6


def test_training_batch_is_a_synthetic_burst(prepared):
    cfg, _ = prepared
    task = cfg["tasks"]["burst"]
    pairs = [(lq, gt) for _, lq, gt in load_split(cfg, "burst", "bundled", "train")]
    sampler = PatchSampler(pairs, 32, degrade=train_degradation(task), margin=train_margin(task))
    b = sampler.sample(2, torch.Generator().manual_seed(3))
    assert b["lq"].shape == (2, N, 4, 4, 4) and b["gt"].shape == (2, 3, 32, 32)
    assert len(b["meta"]) == 2 and {"cam2rgb", "rgb_gain", "shot_noise_level"} <= set(b["meta"][0])
    assert b["meta"][0]["cam2rgb"] != b["meta"][1]["cam2rgb"]     # a new camera per patch
    again = sampler.sample(2, torch.Generator().manual_seed(3))
    assert torch.equal(again["lq"], b["lq"]) and torch.equal(again["gt"], b["gt"])
    with pytest.raises(DpirError, match="plus a 24 px margin"):
        PatchSampler([(None, torch.zeros(3, 60, 60))], 32, degrade=train_degradation(task), margin=24)


def test_three_methods_shapes_and_nfe(trained):
    cfg = trained
    train_network(cfg, "fusion_burst", progress=False)
    sample = list_bursts(paths.prepared(cfg, "burst", "bundled") / "test" / "burst", N)[0]
    frames, _, meta = read_burst(sample)
    y = frames[None]
    expected_nfe = {"burst_bicubic": 0, "bsrt": 1, "dpir": 6}
    outs = {}
    for name, nfe in expected_nfe.items():
        m, _, _, _ = build(cfg, "burst", name)
        with count_nfe(m) as c:
            x = m.restore(y, [make_generator(0, sample.id)], meta=[meta])
        assert x.shape == (1, 3, CROP, CROP), name
        assert c.total == nfe, name
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        outs[name] = x
    # single frame reference: demosaic frame 0, MATLAB bicubic x4, the burst's ISP
    ref = process_linear_to_srgb(bicubic_resize(demosaic_bilinear(frames[0]), 4.0).clamp(0, 1), meta)
    assert torch.allclose(outs["burst_bicubic"][0], ref, atol=1e-6)
    # the backbone row is the BSRT output through the ISP
    m, _, _, _ = build(cfg, "burst", "bsrt")
    with torch.no_grad():
        assert torch.allclose(outs["bsrt"], srgb_batch(m.net(y), [meta]), atol=1e-6)
    # a method without burst metadata support is refused, naming its kind, before any output exists
    cfg2 = copy.deepcopy(cfg)
    cfg2["tasks"]["burst"]["methods"]["plain"] = {"kind": "bicubic"}
    with pytest.raises(DpirError, match="kind 'bicubic'.*cannot restore bursts"):
        restore_dataset(cfg2, "burst", "bundled", "plain", 0, progress=False)
    assert not paths.restored_dir(cfg2, "burst", "bundled", "plain", 0).parent.exists()


def test_cli_end_to_end(trained, tmp_path):
    cfg = copy.deepcopy(trained)
    cfg["out"] = str(tmp_path / "results")
    shutil.copytree(paths.prepared(trained, "burst", "bundled").parent.parent, tmp_path / "data")
    cfg["data_dir"] = str(tmp_path / "data")
    conf = write_yaml(tmp_path / "cfg.yaml", cfg)
    c = ["-c", str(conf), "-q"]
    assert cli(["prepare", *c, "--task", "burst", "--dataset", "bundled"]) == 0
    for net in ("bsrt_burst", "mirnet_s", "fusion_burst"):
        assert cli(["train", *c, "--network", net]) == 0
    for method in ("burst_bicubic", "bsrt", "dpir"):
        run = ["--task", "burst", "--dataset", "bundled", "--method", method, "--seed", "0"]
        assert cli(["restore", *c, *run]) == 0
        assert cli(["score", *c, *run]) == 0
        rec = json.loads(paths.scores(cfg, "burst", "bundled", method, 0).read_text())
        rd = paths.restored_dir(cfg, "burst", "bundled", method, 0)
        run_rec = json.loads((rd / "run.json").read_text())
        assert run_rec["nfe"] == {"burst_bicubic": 0, "bsrt": 1, "dpir": 6}[method]
        assert run_rec["n_images"] == 2 and read_image(rd / f"{run_rec['images'][0]}.png").shape == (3, CROP, CROP)
        assert 5 < rec["metrics"]["psnr_rgb"]["mean"] < 60


def test_bad_bursts_fail_naming_the_file_and_leave_no_output(trained, tmp_path):
    src = trained
    cfg = copy.deepcopy(src)
    shutil.copytree(src["data_dir"], tmp_path / "data")
    shutil.copytree(paths.network_dir(src, "bsrt_burst"), tmp_path / "results" / "networks" / "bsrt_burst")
    cfg["data_dir"], cfg["out"] = str(tmp_path / "data"), str(tmp_path / "results")
    bursts = paths.prepared(cfg, "burst", "bundled") / "test" / "burst" / "bursts"
    first, second = sorted(p.name for p in bursts.iterdir())
    out = paths.restored_dir(cfg, "burst", "bundled", "bsrt", 0)
    # a missing last frame: a burst of 13 frames where the task says 14
    missing = bursts / second / "im_raw_13.png"
    saved = missing.read_bytes()
    missing.unlink()
    with pytest.raises(DpirError, match=f"{second}/im_raw_13.png is missing"):
        restore_dataset(cfg, "burst", "bundled", "bsrt", 0, progress=False)
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
    missing.write_bytes(saved)
    # a frame of the wrong size in the second burst: found after the first image is written, cleaned up
    from dpir.data import layouts

    bad = bursts / second / "im_raw_03.png"
    layouts.write_png16(bad, np.zeros((2, 2, 4), np.uint16))
    with pytest.raises(DpirError, match=f"{second}/im_raw_03.png is 2x2 .* frames of a burst must match"):
        restore_dataset(cfg, "burst", "bundled", "bsrt", 0, progress=False)
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
    assert first != second
