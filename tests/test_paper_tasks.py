"""Paper scale, deblurring and burst: config/paper.yaml's deblur and burst sections, official FFTformer and
BSRT imports (dpir.official), the official SyntheticBurst bursts and the Zurich RAW-to-RGB training source
(dpir.data.paper, dpir.data.prepare).  Every dataset and checkpoint is a fixture written here."""
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, base_config, same_weights
from PIL import Image

from dpir.checkpoint import load_network
from dpir.data import layouts
from dpir.data.images import SkippedFile, read_image
from dpir.errors import DpirError

FFT_OFFICIAL = {"inp_channels": 3, "out_channels": 3, "dim": 48, "num_blocks": [6, 6, 12, 8],
                "num_refinement_blocks": 4, "ffn_expansion_factor": 3, "bias": False}
FFT_TINY = {"inp_channels": 3, "out_channels": 3, "dim": 8, "num_blocks": [1, 1, 1, 1],
            "num_refinement_blocks": 1, "ffn_expansion_factor": 2, "bias": False}
# the official BSRT layout (Swin feature extraction and trunk, SpyNet flow guidance) at toy width
BSRT_TINY = {"burst_size": 3, "embed_dim": 12, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4,
             "mlp_ratio": 2.0, "num_feat": 8, "groups": 2, "flow": True, "extract": "swin", "trunk": "swin"}


# ------------------------------------------------------------------------------------------- paper.yaml

@pytest.fixture(scope="module")
def paper():
    from dpir.config import load_config

    return load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"])


def test_paper_config_has_all_three_tasks(paper):
    from dpir import fetch
    from dpir.data.burst import OFFICIAL_SCORE_BORDER
    from dpir.nets.burst import CONFIGS

    assert paper["enabled_tasks"] == ["sr", "deblur", "burst"]
    assert {n: paper["datasets"][n]["kind"] for n in ("gopro", "hide", "syntheticburst", "zurich")} == \
        {"gopro": "gopro", "hide": "hide", "syntheticburst": "syntheticburst", "zurich": "zurich"}
    assert paper["datasets"]["gopro"]["split"] == "test" and paper["datasets"]["gopro"]["test_crop"] is None
    nets, deblur, burst = paper["networks"], paper["tasks"]["deblur"], paper["tasks"]["burst"]
    assert nets["fftformer_deblur"]["official"] == "fftformer_gopro" and nets["fftformer_deblur"]["kwargs"] == FFT_OFFICIAL
    assert nets["bsrt_burst"]["official"] == "bsrt_weights"
    assert nets["bsrt_burst"]["kwargs"] == {**CONFIGS["official_small"], "base_skip": False}
    assert {nets[n]["official"] for n in nets if "official" in nets[n]} <= set(fetch.list_names("weights"))
    # DiffIR's deblurring architecture [REF 2]
    for n in ("diffir_s1_deblur", "diffir_s2_deblur"):
        kw = nets[n]["kwargs"]
        assert (kw["task"], kw["dim"], kw["num_blocks"], kw["num_refinement_blocks"], kw["ffn_expansion_factor"],
                kw["n_encoder_res"]) == ("deblur", 48, [3, 5, 6, 6], 4, 2.0, 5)
    # every trained deblurring network learns from GoPro train, the burst fusion net from Zurich
    trained = {n: nets[n]["train"]["dataset"] for n in ("nafnet_deblur", "fusion_deblur", "indi_deblur",
                                                        "diffir_s1_deblur", "diffir_s2_deblur", "fusion_burst")}
    assert trained == {**{n: "gopro" for n in trained}, "fusion_burst": "zurich"}
    for n, tau in (("fusion_deblur", 20), ("fusion_burst", 5)):   # deblur: trained to t = 20 for Table 13's sweep
        t = nets[n]["train"]
        assert nets[n]["kwargs"]["n_f"] == 64 and (t["tau"], t["T"]) == (tau, 1000)
        assert {k: t[k] for k in ("batch", "patch", "lr", "lr_decay", "lr_every", "steps")} == \
            {"batch": 128, "patch": 256, "lr": 1e-4, "lr_decay": 0.99, "lr_every": 1000, "steps": 300_000}
    assert (deblur["test_datasets"], deblur["train_dataset"], deblur["crop_border"]) == (["gopro", "hide"], "gopro", 0)
    assert (burst["test_datasets"], burst["train_dataset"]) == (["syntheticburst"], "zurich")
    assert burst["crop_border"] == OFFICIAL_SCORE_BORDER == 40
    for t in (deblur, burst):
        assert t["metrics"] == ["psnr_rgb", "ssim_rgb", "lpips_alex", "topiq_delta"]
        d = t["methods"]["dpir"]
        assert (d["mode"], d["tau"], d["T"], d["beta_start"], d["beta_end"]) == ("jump", 5, 1000, 1e-4, 2e-2)
    assert deblur["methods"]["indi"]["steps"] == 10
    assert {m: deblur["methods"][m].get("network") for m in ("nafnet", "fftformer", "indi", "diffir")} == \
        {"nafnet": "nafnet_deblur", "fftformer": "fftformer_deblur", "indi": "indi_deblur", "diffir": "diffir_s2_deblur"}
    assert set(burst["methods"]) == {"burst_bicubic", "bsrt", "dpir"} and burst["methods"]["dpir"]["ir"] == "bsrt_burst"


def _jobs(plan: str) -> list[tuple[str, dict]]:
    """(rule, {key: value}) of every job block of a `snakemake -n` listing."""
    jobs = []
    for line in plan.splitlines():
        s = line.strip()
        if line.startswith(("rule ", "localrule ")) and s.endswith(":"):
            jobs.append((s.split()[1].rstrip(":"), {}))
        elif jobs and line.startswith("    ") and ": " in s:
            k, v = s.split(": ", 1)
            jobs[-1][1][k] = v
    return jobs


def test_paper_dry_run_deblur_and_burst_jobs(tmp_path):
    """The paper DAG for deblurring and bursts: official FFTformer/BSRT imported, the rest trained on GoPro
    or Zurich, GoPro+HIDE and SyntheticBurst prepared and restored.  Planning touches no data or network."""
    (tmp_path / "noabl.yaml").write_text(yaml.safe_dump({"run_ablations": False}))   # ablations: their own test
    env = {**__import__("os").environ, "DPIR_DATA": str(tmp_path / "dl"), "DPIR_WEIGHTS": str(tmp_path / "w")}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "run"),
                        "--configfile", str(ROOT / "config" / "paper.yaml"), str(tmp_path / "noabl.yaml"),
                        "-n", "--cores", "2"], capture_output=True, text=True, check=False, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _jobs(r.stdout + r.stderr)
    wild = [(rule, dict(kv.split("=") for kv in j["wildcards"].split(", "))) for rule, j in jobs if "wildcards" in j]
    imported = {w["network"] for rule, w in wild if rule == "import_official"}
    trained = {w["network"] for rule, w in wild if rule == "train"}
    prepared = {(w["task"], w["dataset"]) for rule, w in wild if rule == "prepare"}
    restored = {(w["task"], w["dataset"], w["method"], w["seed"]) for rule, w in wild if rule == "restore"}
    assert {"fftformer_deblur", "bsrt_burst"} <= imported and not {"fftformer_deblur", "bsrt_burst"} & trained
    assert {"nafnet_deblur", "fusion_deblur", "indi_deblur", "diffir_s1_deblur", "diffir_s2_deblur",
            "fusion_burst", "mirnet_s"} <= trained
    assert {p for p in prepared if p[0] != "sr"} == {("deblur", "gopro"), ("deblur", "hide"),
                                                     ("burst", "syntheticburst"), ("burst", "zurich")}
    # deterministic rows (blurry, nafnet, fftformer, the competitor checkpoints nafnet_official and restormer;
    # burst_bicubic, bsrt) once, stochastic ones with 3 seeds
    deblur = {(d, m, s) for t, d, m, s in restored if t == "deblur"}
    assert deblur == {(d, m, s) for d in ("gopro", "hide") for m, seeds in
                      (("blurry", "0"), ("nafnet", "0"), ("fftformer", "0"), ("nafnet_official", "0"),
                       ("restormer", "0"), ("indi", "012"), ("diffir", "012"),
                       ("dpir", "012")) for s in seeds}
    assert {(d, m, s) for t, d, m, s in restored if t == "burst"} == \
        {("syntheticburst", "burst_bicubic", "0"), ("syntheticburst", "bsrt", "0")} | \
        {("syntheticburst", "dpir", s) for s in "012"}
    fusion_burst = next(j for rule, j in jobs if rule == "train" and j.get("wildcards") == "network=fusion_burst")
    assert "data/prepared/paper/burst/zurich/manifest.json" in fusion_burst["input"]
    assert "results/paper/networks/bsrt_burst/model.safetensors" in fusion_burst["input"]
    assert not (tmp_path / "dl").exists() and not (tmp_path / "w").exists()


# ------------------------------------------------------------------------------------------- FFTformer

def test_fftformer_official_kwargs_match_the_release_layout():
    """Built with the official kwargs, our FFTformer has the release's parameter count (16.6M in the
    FFTformer paper) and a state dict that spandrel's detector for official FFTformer files accepts, and
    from which spandrel reads back exactly these hyperparameters."""
    from spandrel.architectures.FFTformer import FFTformerArch

    from dpir.nets import build_network

    sd = build_network("fftformer", **FFT_OFFICIAL).state_dict()
    assert len(sd) == 535 and sum(v.numel() for v in sd.values()) == 16_560_474
    arch = FFTformerArch()
    assert arch.detect(sd)
    hp = arch.load(sd).model.hyperparameters
    assert (hp["dim"], list(hp["num_blocks"][:3]), hp["num_refinement_blocks"], hp["ffn_expansion_factor"], hp["bias"]) \
        == (48, [6, 6, 12], 4, 3, False)


def test_import_fftformer_raw_state_dict(staged):
    from dpir.nets import build_network
    from dpir.official import import_official

    torch.manual_seed(0)
    ref = build_network("fftformer", **FFT_TINY)
    path = staged / "fftformer_GoPro.pth"
    torch.save(ref.state_dict(), path)             # the release layout: a raw state dict
    cfg = base_config(staged, networks={"fftformer_deblur": {"official": str(path), "kwargs": FFT_TINY}})
    out = import_official(cfg, "fftformer_deblur")
    meta = json.loads((out.parent / "model.json").read_text())
    assert meta["arch"] == "fftformer" and meta["kwargs"] == FFT_TINY and meta["official_source"] == f"file:{path}"
    net = load_network(out.parent)
    assert same_weights(net, ref)
    y = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(y), ref.eval()(y))       # padded to 32 and cropped back: same function

    other = build_network("fftformer", **{**FFT_TINY, "num_refinement_blocks": 2}).state_dict()
    other.pop("output.weight")
    torch.save(other, path)
    with pytest.raises(DpirError, match=r"fftformer_GoPro\.pth does not fit .*missing keys: output\.weight; "
                                        r"unexpected keys: refinement\.1\."):
        import_official(cfg, "fftformer_deblur")


# ------------------------------------------------------------------------------------------- BSRT

def test_import_bsrt_state_dict_ddp_prefix_and_official_buffers(staged):
    from dpir.nets import build_network
    from dpir.official import import_official

    torch.manual_seed(2)
    ref = build_network("bsrt", **BSRT_TINY)
    # as saved from DistributedDataParallel under a 'state_dict' key, with the attention masks the official
    # Swin blocks keep as persistent buffers (ours are recomputed, not saved)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    state["module.pre_layers.0.attn_mask"] = torch.zeros(4, 16, 16)
    path = staged / "bsrt_small.pth"
    torch.save({"state_dict": state}, path)
    kwargs = {**BSRT_TINY, "base_skip": False}     # config.yaml's CPU net has the skip; mappings merge
    cfg = base_config(staged, networks={"bsrt_burst": {"official": str(path), "kwargs": kwargs}})
    out = import_official(cfg, "bsrt_burst")
    net = load_network(out.parent, expect_arch="bsrt")
    assert same_weights(net, ref) and any(k.startswith("spynet.") for k in net.state_dict())
    assert json.loads((out.parent / "model.json").read_text())["kwargs"] == kwargs

    torch.save(build_network("bsrt", **{**BSRT_TINY, "flow": False}).state_dict(), path)
    with pytest.raises(DpirError, match=r"bsrt_small\.pth does not fit BSRT: missing keys: .*spynet\."):
        import_official(cfg, "bsrt_burst")


def test_bsrt_release_archive_is_refused_with_its_contents(staged):
    from dpir.official import import_official

    path = staged / "bsrt_release_gdrive.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("BSRT_pretrained/BSRT_small.pth", b"x")
        z.writestr("BSRT_pretrained/BSRT_large.pth", b"y")
    kwargs = {**BSRT_TINY, "base_skip": False}     # config.yaml's CPU net has the skip; mappings merge
    cfg = base_config(staged, networks={"bsrt_burst": {"official": str(path), "kwargs": kwargs}})
    with pytest.raises(DpirError, match=r"zip archive of 2 files \(BSRT_pretrained/BSRT_small\.pth, "
                                        r"BSRT_pretrained/BSRT_large\.pth\).*networks\.bsrt_burst\.official"):
        import_official(cfg, "bsrt_burst")


# ------------------------------------------------------------------------------------------- SyntheticBurst

N_FRAMES, H, W = 14, 4, 6


def _official_bursts(root, ids=("0000", "0001")):
    """SyntheticBurstVal in the official layout: 16-bit PNGs in cv2's channel order (value * 2^14) and
    meta_info.pkl holding torch tensors and numpy scalars, as the released files do."""
    g = np.random.default_rng(7)
    for n, bid in enumerate(ids):
        frames = g.integers(0, 2 ** 14 + 1, (N_FRAMES, H, W, 4)).astype(np.uint16)
        gt = g.integers(0, 2 ** 14 + 1, (8 * H, 8 * W, 3)).astype(np.uint16)
        for i, f in enumerate(frames):
            layouts.write_png16(root / "bursts" / bid / f"im_raw_{i:02d}.png", f[..., [2, 1, 0, 3]])
        layouts.write_png16(root / "gt" / bid / "im_rgb.png", gt[..., ::-1])
        rgb2cam = torch.eye(3) * 0.8 + 0.2 / 3 + 0.01 * n
        meta = {"rgb2cam": rgb2cam, "cam2rgb": torch.linalg.inv(rgb2cam), "rgb_gain": torch.tensor(1.25 + n / 10),
                "red_gain": 2.1, "blue_gain": np.float32(1.7), "smoothstep": True, "gamma": True,
                "shot_noise_level": torch.tensor(0.002), "read_noise_level": np.float64(3e-5)}
        with open(root / "gt" / bid / "meta_info.pkl", "wb") as fh:
            pickle.dump(meta, fh)


def _burst_config(tmp_path, root):
    return base_config(tmp_path, datasets={"sb": {"kind": "syntheticburst", "path": str(root)}},
                       tasks={"burst": {"test_datasets": ["sb"], "metrics": ["psnr_rgb"], "crop_border": 0}})


def test_prepare_official_syntheticburst_round_trips(tmp_path):
    from dpir.data.burst import process_linear_to_srgb
    from dpir.data.burst_io import list_bursts, read_burst
    from dpir.data.prepare import prepare
    from dpir.tasks import burst_settings

    src = tmp_path / "dl" / "SyntheticBurstVal"       # the root may hold the unpacked top-level folder
    _official_bursts(src)
    cfg = _burst_config(tmp_path, tmp_path / "dl")
    n = burst_settings(cfg["tasks"]["burst"])[0]
    man = prepare(cfg, "burst", "sb")
    assert man["splits"]["test"] == {"ids": ["0000", "0001"], "sizes": {"0000": [32, 48], "0001": [32, 48]}}
    assert man["splits"]["train"]["ids"] == [] and man["skipped"] == [] and man["notes"] == {}
    test = tmp_path / "data" / "burst" / "sb" / "test"
    ours = {b.id: b for b in list_bursts(test / "burst", n)}
    for s in layouts.syntheticburst_val(src, n):
        frames, gt, meta = read_burst(ours[s.id])
        ref_frames, ref_gt, ref_meta = read_burst(s)   # the same reader, on the official layout
        assert frames.shape == ref_frames.shape == (n, 4, H, W) and gt.shape == ref_gt.shape == (3, 32, 48)
        assert (frames - ref_frames).abs().max() <= 2 ** -14 and (gt - ref_gt).abs().max() <= 2 ** -14
        assert ours[s.id].meta.name == "meta_info.json" and meta["burst_name"] == s.id
        assert meta["rgb2cam"] == ref_meta["rgb2cam"].tolist() and meta["rgb_gain"] == float(ref_meta["rgb_gain"])
        assert meta["blue_gain"] == float(np.float32(1.7)) and meta["read_noise_level"] == 3e-5
        # the sRGB target: the burst's own ISP (with the pickle's tensors) of the linear gt, in 8 bits
        srgb = process_linear_to_srgb(ref_gt, ref_meta)
        assert (read_image(test / "gt" / f"{s.id}.png") - srgb).abs().max() <= 0.5 / 255 + 1e-6
        assert srgb.std() > 0.05       # not a constant image: the comparison means something


def test_restore_and_score_read_the_prepared_official_bursts(tmp_path):
    from dpir.data.prepare import prepare
    from dpir.restore import restore_dataset
    from dpir.score import score_run

    _official_bursts(tmp_path / "sbv", ids=("0007",))
    cfg = _burst_config(tmp_path, tmp_path / "sbv")
    prepare(cfg, "burst", "sb")
    restore_dataset(cfg, "burst", "sb", "burst_bicubic", 0, progress=False)
    out = read_image(tmp_path / "results" / "restored" / "burst" / "sb" / "burst_bicubic" / "seed0" / "0007.png")
    assert out.shape == (3, 32, 48)
    res = score_run(cfg, "burst", "sb", "burst_bicubic", 0)
    psnr = res["metrics"]["psnr_rgb"]["per_image"]["0007"]
    assert 0 < psnr < 60


def test_syntheticburst_bad_input_names_the_file(tmp_path):
    from dpir.data.paper import source_images
    from dpir.data.prepare import prepare

    root = tmp_path / "sbv"
    _official_bursts(root)
    cfg = _burst_config(tmp_path, root)
    manifest = tmp_path / "data" / "burst" / "sb" / "manifest.json"
    frame = root / "bursts" / "0001" / "im_raw_05.png"
    data = frame.read_bytes()
    frame.unlink()
    with pytest.raises(DpirError, match=r"bursts/0001/im_raw_05\.png is missing"):
        prepare(cfg, "burst", "sb")
    assert not manifest.exists()                   # a failed prepare leaves no manifest behind
    frame.write_bytes(data)
    meta = root / "gt" / "0000" / "meta_info.pkl"
    data = meta.read_bytes()
    meta.unlink()
    with pytest.raises(DpirError, match=r"gt/0000/meta_info\.pkl is missing"):
        prepare(cfg, "burst", "sb")
    meta.write_bytes(data)
    # a target of the wrong size: the loader names the file, prepare skips that burst and records why
    layouts.write_png16(root / "gt" / "0001" / "im_rgb.png", np.zeros((24, 48, 3), np.uint16))
    task = cfg["tasks"]["burst"]
    with pytest.raises(DpirError, match=r"gt/0001/im_rgb\.png is 48x24; expected 48x32"):
        source_images(cfg["datasets"]["sb"], "test", task)[1][1]()
    with pytest.warns(SkippedFile, match=r"im_rgb\.png is 48x24"):
        man = prepare(cfg, "burst", "sb")
    assert man["splits"]["test"]["ids"] == ["0000"]
    assert man["skipped"][0]["id"] == "0001" and "0001/im_rgb.png" in man["skipped"][0]["reason"]
    # and the kind only serves burst tasks, without a crop
    with pytest.raises(DpirError, match="test set of burst tasks only"):
        source_images({"kind": "syntheticburst", "path": str(root)}, "test", {"kind": "deblur", "scale": 1})
    with pytest.raises(DpirError, match="test_crop does not apply"):
        source_images({"kind": "syntheticburst", "path": str(root), "test_crop": 16}, "test", task)


# ------------------------------------------------------------------------------------------- Zurich

def _jpg(path, seed, size=(40, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, quality=95)


def test_zurich_train_source_lists_the_canon_jpgs(tmp_path):
    from dpir.data.paper import source_images
    from dpir.data.prepare import prepare, read_manifest

    root = tmp_path / "zurich-raw-to-rgb"
    for i in (0, 1, 2, 10):
        _jpg(root / "train" / "canon" / f"{i}.jpg", i)
    _jpg(root / "test" / "canon" / "0.jpg", 99)
    (root / "train" / "canon" / "readme.txt").write_text("not an image")
    ds = {"kind": "zurich", "path": str(tmp_path)}
    items = source_images(ds, "train")
    assert [i for i, _ in items] == ["0", "1", "2", "10"]          # numeric order, as the official list
    gt, notes, lq = items[3][1]()
    assert lq is None and notes == [] and gt.shape == (3, 40, 48)
    assert source_images(ds, "test") == []                         # a training source only

    cfg = base_config(tmp_path, datasets={"z": ds})
    man = prepare(cfg, "burst", "z")                               # an empty test split is no error here
    assert man["splits"]["train"]["ids"] == ["0", "1", "2", "10"] and man["splits"]["test"]["ids"] == []
    assert read_manifest(cfg, "burst", "z")["splits"]["train"]["sizes"]["10"] == [40, 48]
    stored = read_image(tmp_path / "data" / "burst" / "z" / "train" / "gt" / "10.png")
    assert torch.equal(stored, read_image(root / "train" / "canon" / "10.jpg"))
    with pytest.raises(DpirError, match=r"train/canon does not exist.*dpir fetch zurich_raw2rgb"):
        source_images({"kind": "zurich", "path": str(tmp_path / "zurich-raw-to-rgb" / "test")}, "train")
