"""Paper scale: official weights into the workflow (dpir.official), paper datasets (dpir.data.paper),
config/paper.yaml, and sharded restoration (workflow/rules/shard.smk)."""
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, base_config, same_weights
from PIL import Image

from dpir.checkpoint import load_network
from dpir.errors import DpirError

TINY_SWINIR = {"upscale": 4, "in_chans": 3, "img_size": 16, "window_size": 8, "img_range": 1.0, "depths": [2],
               "embed_dim": 12, "num_heads": [2], "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect",
               "resi_connection": "1conv"}


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- official

def test_import_prestaged_swinir_by_fetch_name(staged, monkeypatch):
    from dpir.fetch import registry
    from dpir.nets import build_network
    from dpir.official import import_official

    # the registry publishes the release's SHA-256; here the entry is one without a published hash, whose
    # first verified file is recorded in the lock (a tiny pre-staged stand-in for the 68 MB release)
    doc = json.loads(registry.REGISTRY_PATH.read_text())
    for e in doc["entries"]:
        if e["name"] == "swinir_classical_x4":
            e["sha256"] = e["size"] = None
    (staged / "registry.json").write_text(json.dumps(doc))
    monkeypatch.setattr(registry, "REGISTRY_PATH", staged / "registry.json")
    torch.manual_seed(0)
    ref = build_network("swinir", **TINY_SWINIR)
    target = registry.get("swinir_classical_x4").path          # pre-staged where `dpir fetch` puts it
    target.parent.mkdir(parents=True)
    torch.save({"params": ref.state_dict()}, target)
    cfg = base_config(staged, networks={"swinir_sr": {"official": "swinir_classical_x4", "kwargs": TINY_SWINIR}})
    out = import_official(cfg, "swinir_sr")
    assert out == staged / "results" / "networks" / "swinir_sr" / "model.safetensors"
    meta = json.loads((out.parent / "model.json").read_text())
    assert meta["official_source"] == "fetch:swinir_classical_x4"
    assert meta["official_sha256"] == _sha256(target) and meta["kwargs"] == TINY_SWINIR
    assert same_weights(load_network(out.parent), ref)
    # the unpublished hash was recorded on first verification, into the lock file of the environment
    lock = json.loads((staged / "registry.lock.json").read_text())["files"]
    assert lock["swinir_classical_x4"]["sha256"] == _sha256(target)


def test_import_rrdb_from_basicsr_key_layout(staged):
    from dpir.nets import build_network
    from dpir.official import import_official

    kw = {"in_nc": 3, "out_nc": 3, "num_filters": 8, "num_blocks": 2, "scale": 4}
    torch.manual_seed(1)
    ref = build_network("rrdb", **kw)
    # BasicSR names written out by hand (independent of the converter under test)
    names = {"model.0": "conv_first", "model.1.sub.2": "conv_body", "model.3": "conv_up1", "model.6": "conv_up2",
             "model.8": "conv_hr", "model.10": "conv_last"}
    basicsr = {}
    for k, v in ref.state_dict().items():
        stem, suffix = k.rsplit(".", 1)
        if ".RDB" in k:   # model.1.sub.<i>.RDB<j>.conv<k>.0.<w|b> -> body.<i>.rdb<j>.conv<k>.<w|b>
            p = stem.split(".")
            basicsr[f"body.{p[3]}.rdb{p[4][3:]}.{p[5]}.{suffix}"] = v
        else:
            basicsr[f"{names[stem]}.{suffix}"] = v
    path = staged / "RRDB_PSNR_x4.pth"
    torch.save({"params_ema": basicsr}, path)
    cfg = base_config(staged, networks={"rrdb_sr": {"official": str(path), "kwargs": kw}})
    out = import_official(cfg, "rrdb_sr")
    assert json.loads((out.parent / "model.json").read_text())["official_source"] == f"file:{path}"
    assert same_weights(load_network(out.parent), ref)


def test_import_srdiff_reads_architecture_off_the_file(staged):
    from baselines.srdiff.nets import SRDiffNet
    from baselines.srdiff.sampler import cosine_schedule
    from dpir.official import import_official

    torch.manual_seed(2)
    ref = SRDiffNet(rrdb={"nf": 8, "nb": 3, "gc": 4}, hidden=8, dim_mults=[1, 2], scale=4, T=7)
    state = {**ref.state_dict(), "betas": torch.tensor(cosine_schedule(7, 0.008).betas[1:], dtype=torch.float32)}
    path = staged / "model_ckpt_steps_400000.ckpt"
    torch.save({"global_step": 1, "state_dict": {"model": state}}, path)
    cfg = base_config(staged)
    cfg["networks"]["srdiff"] = {"arch": "srdiff", "task": "sr", "official": str(path), "kwargs": {}}
    out = import_official(cfg, "srdiff")
    kwargs = json.loads((out.parent / "model.json").read_text())["kwargs"]
    assert kwargs == {"rrdb": {"nf": 8, "gc": 4, "nb": 3}, "scale": 4, "hidden": 8, "dim_mults": [1, 2], "T": 7}
    net = load_network(out.parent)
    assert net.T == 7 and same_weights(net, ref)


def test_import_diffir_s2(staged):
    from baselines.diffir.nets import DiffIRS2
    from dpir.official import import_official

    cfg = base_config(staged)
    kw = cfg["networks"]["diffir_s2"]["kwargs"]
    torch.manual_seed(3)
    ref = DiffIRS2(**kw)
    path = staged / "DiffIRS2.pth"
    torch.save({"params": ref.state_dict()}, path)
    cfg["networks"]["diffir_s2"]["official"] = str(path)
    out = import_official(cfg, "diffir_s2")
    assert same_weights(load_network(out.parent, expect_arch="diffir_s2"), ref)


def test_import_errors_name_the_key(staged):
    from dpir.official import import_official

    cfg = base_config(staged)
    with pytest.raises(DpirError, match="has no `official:` key"):
        import_official(cfg, "swinir_sr")
    cfg["networks"]["swinir_sr"]["official"] = "swinir_clasical_x4"
    with pytest.raises(DpirError, match=r"networks\.swinir_sr\.official.*Did you mean 'swinir_classical_x4'"):
        import_official(cfg, "swinir_sr")
    cfg["networks"]["swinir_sr"]["official"] = "div2k_valid_hr"
    with pytest.raises(DpirError, match="dataset of the fetch registry"):
        import_official(cfg, "swinir_sr")
    bad = staged / "wrong.pth"
    torch.save({"params": {"foo": torch.zeros(1)}}, bad)
    cfg["networks"]["swinir_sr"]["official"] = str(bad)
    with pytest.raises(DpirError, match="unexpected keys: foo"):
        import_official(cfg, "swinir_sr")


def test_cli_import_official(staged, tmp_path):
    from dpir.cli import main
    from dpir.nets import build_network

    torch.save({"params": build_network("swinir", **TINY_SWINIR).state_dict()}, tmp_path / "w.pth")
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump({"out": str(tmp_path / "res"), "networks": {"swinir_sr": {
        "official": str(tmp_path / "w.pth"), "kwargs": TINY_SWINIR}}}))
    assert main(["import-official", "-q", "-c", str(ROOT / "config" / "config.yaml"), "-c", str(over),
                 "--network", "swinir_sr"]) == 0
    assert (tmp_path / "res" / "networks" / "swinir_sr" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------- datasets

def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _rand_u8(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _div2k(root, split="valid", ids=("0801", "0802")):
    arrays = {}
    for n, i in enumerate(ids):
        hr, lr = _rand_u8((24, 32, 3), n), _rand_u8((6, 8, 3), 10 + n)
        _png(root / f"DIV2K_{split}_HR" / f"{i}.png", hr)
        _png(root / f"DIV2K_{split}_LR_bicubic" / "X4" / f"{i}x4.png", lr)
        arrays[i] = (hr, lr)
    return arrays


def test_div2k_official_lr_and_regenerate(tmp_path):
    from dpir.data.paper import source_images

    arrays = _div2k(tmp_path)
    items = source_images({"kind": "div2k", "path": str(tmp_path), "lr": "official"}, "test", {"scale": 4})
    assert [i for i, _ in items] == ["0801", "0802"]
    gt, notes, lq = items[1][1]()
    assert notes == [] and gt.shape == (3, 24, 32) and lq.shape == (3, 6, 8)
    assert torch.equal(gt, torch.from_numpy(arrays["0802"][0]).permute(2, 0, 1).float() / 255)
    assert torch.equal(lq, torch.from_numpy(arrays["0802"][1]).permute(2, 0, 1).float() / 255)
    gt, _, lq = source_images({"kind": "div2k", "path": str(tmp_path), "lr": "regenerate"}, "test", {"scale": 4})[0][1]()
    assert lq is None and gt.shape == (3, 24, 32)


def test_div2k_without_path_asks_fetch_for_the_right_entries(tmp_path, monkeypatch):
    from dpir import fetch
    from dpir.data import paper

    _div2k(tmp_path, "train", ids=("0001",))
    asked = []
    monkeypatch.setattr(fetch, "fetch", lambda name, **kw: asked.append(name) or tmp_path)
    items = paper.source_images({"kind": "div2k", "lr": "official"}, "train", {"scale": 4})
    assert asked == ["div2k_train_hr", "div2k_train_lr_x4"] and [i for i, _ in items] == ["0001"]
    asked.clear()
    with pytest.raises(DpirError, match="DIV2K HR folder"):
        paper.source_images({"kind": "div2k"}, "test", {"scale": 4})
    assert asked == ["div2k_valid_hr"]


def test_gopro_and_hide_pairs_use_the_blurred_image(tmp_path):
    from dpir.data.paper import source_images

    g = tmp_path / "gopro" / "GOPRO_Large"
    _png(g / "test" / "GOPR0384_11_00" / "blur" / "000001.png", _rand_u8((8, 8, 3), 1))
    _png(g / "test" / "GOPR0384_11_00" / "sharp" / "000001.png", _rand_u8((8, 8, 3), 2))
    _png(g / "train" / "GOPR0372_07_00" / "blur" / "000047.png", _rand_u8((8, 8, 3), 3))
    _png(g / "train" / "GOPR0372_07_00" / "sharp" / "000047.png", _rand_u8((8, 8, 3), 4))
    items = source_images({"kind": "gopro", "path": str(tmp_path / "gopro")}, "test")
    assert [i for i, _ in items] == ["GOPR0384_11_00__000001"]
    gt, _, lq = items[0][1]()
    assert torch.equal(lq, torch.from_numpy(_rand_u8((8, 8, 3), 1)).permute(2, 0, 1).float() / 255)
    assert torch.equal(gt, torch.from_numpy(_rand_u8((8, 8, 3), 2)).permute(2, 0, 1).float() / 255)
    for cfg in ({"path": str(tmp_path / "gopro")}, {"path": "elsewhere", "train_path": str(tmp_path / "gopro")}):
        train = source_images({"kind": "gopro", **cfg}, "train")
        assert [i for i, _ in train] == ["GOPR0372_07_00__000047"]

    h = tmp_path / "hide" / "HIDE_dataset"
    _png(h / "test" / "test-close-ups" / "1fromGOPR0950.png", _rand_u8((8, 8, 3), 5))
    _png(h / "GT" / "1fromGOPR0950.png", _rand_u8((8, 8, 3), 6))
    _png(h / "GT" / "train_only.png", _rand_u8((8, 8, 3), 7))
    items = source_images({"kind": "hide", "path": str(tmp_path / "hide")}, "test")
    assert [i for i, _ in items] == ["test-close-ups__1fromGOPR0950"]
    assert items[0][1]()[2] is not None
    assert source_images({"kind": "hide", "path": str(tmp_path / "hide")}, "train") == []


def test_paper_kinds_errors(tmp_path):
    from dpir.data.paper import source_images
    from dpir.data.prepare import _source_images

    with pytest.raises(DpirError, match="test set of burst tasks only"):
        source_images({"kind": "syntheticburst"}, "test", {"kind": "sr", "scale": 4})
    with pytest.raises(DpirError, match="not a paper dataset"):
        source_images({"kind": "bundled"}, "test")
    with pytest.raises(DpirError, match="path .* is not a folder"):
        source_images({"kind": "gopro", "path": str(tmp_path / "missing")}, "test")
    _div2k(tmp_path)       # prepare's paper branch hands over to dpir.data.paper
    task = {"kind": "sr", "scale": 4}
    assert [i for i, _ in _source_images({"kind": "div2k", "path": str(tmp_path)}, "test", task)] == ["0801", "0802"]


# ------------------------------------------------------------------------------------------- paper.yaml

@pytest.fixture(scope="module")
def paper():
    from dpir.config import load_config

    return load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"])


def test_paper_config_values(paper):
    from dpir import fetch

    nets, sr = paper["networks"], paper["tasks"]["sr"]
    assert nets["swinir_sr"]["official"] == "swinir_classical_x4" and nets["rrdb_sr"]["official"] == "rrdb_psnr_x4"
    assert all(nets[n]["official"] in fetch.list_names("weights") for n in nets if "official" in nets[n])
    sw = nets["swinir_sr"]["kwargs"]
    assert (sw["embed_dim"], sw["depths"], sw["num_heads"], sw["window_size"], sw["upsampler"]) == \
        (180, [6] * 6, [6] * 6, 8, "pixelshuffle")
    den = nets["mirnet_s"]
    assert den["kwargs"] == {"n_feat": 64, "n_rrg": 3, "n_msrb": 1, "height": 3, "width": 2}
    assert {k: den["train"][k] for k in ("batch", "patch", "lr", "lr_decay", "lr_every", "steps")} == \
        {"batch": 8, "patch": 192, "lr": 2e-4, "lr_decay": 0.999, "lr_every": 2000, "steps": 1_000_000}
    assert round(den["train"]["sigma_max"] * 255, 1) == 244.3
    fu = nets["fusion_sr"]
    assert fu["kwargs"]["n_f"] == 64 and fu["train"]["tau"] == 250
    assert {k: fu["train"][k] for k in ("batch", "patch", "lr", "lr_decay", "lr_every", "steps")} == \
        {"batch": 128, "patch": 256, "lr": 1e-4, "lr_decay": 0.99, "lr_every": 1000, "steps": 300_000}
    ddim = sr["methods"]["dpir_jump_ddim"]
    assert (ddim["T"], ddim["tau"], ddim["ddim_stride"], ddim["beta_start"], ddim["beta_end"]) == (1000, 250, 5, 1e-4, 2e-2)
    assert sr["test_datasets"] == ["div2k"] and sr["crop_border"] == 4
    assert sr["metrics"] == ["psnr_y", "ssim_y", "lpips_alex", "topiq_delta"]
    ds = paper["datasets"]["div2k"]
    assert ds["kind"] == "div2k" and ds["test_crop"] is None and ds["lr"] in ("official", "regenerate")
    # every method of the embedded config runs on DIV2K with a network of paper size, not the small ones
    for m in sr["methods"].values():
        for key in ("network", "ir", "denoiser", "fusion"):
            if key in m:
                assert nets[m[key]].get("official") or nets[m[key]]["train"]["dataset"] == "div2k"


def test_paper_yaml_comments_cite_every_hyperparameter():
    """Every line that sets a training or sampling number carries a citation or an UNKNOWN mark."""
    text = (ROOT / "config" / "paper.yaml").read_text()
    keys = re.compile(r"\b(steps|batch|patch|lr|lr_decay|lr_every|tau|ddim_stride|T|n_f|n_feat|sigma_max|"
                      r"crop_border|seeds|hidden|dim_mults|embed_dim|num_filters|nf):")
    checked = 0
    for line in text.splitlines():
        if keys.search(line.split("#")[0]):
            checked += 1
            assert "#" in line and any(tag in line for tag in ("REF", "UNKNOWN", "DEVIATION", "baselines/", "dpir/")), line
    assert checked >= 25


def test_paper_dry_run_imports_official_and_trains_the_rest(tmp_path):
    """Job counts of the paper DAG without the ablations (their own tests); tests/test_paper_tasks.py checks
    the deblurring and burst jobs one by one."""
    (tmp_path / "noabl.yaml").write_text(yaml.safe_dump({"run_ablations": False}))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                        "--configfile", str(ROOT / "config" / "paper.yaml"), str(tmp_path / "noabl.yaml"),
                        "-n", "--cores", "2", "-q", "rules"], capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    plan = r.stdout + r.stderr
    counts = {m[0]: int(m[1]) for line in plan.splitlines() if len(m := line.split()) == 2 and m[1].isdigit()}
    # imported: swinir_sr, rrdb_sr, fftformer_deblur, bsrt_burst.  Trained: 7 for SR + the whole-chain pair
    # (mirnet_full, fusion_full) of the full-chain reference, 5 for deblurring
    # (nafnet, fusion, indi, diffir s1/s2), 1 for bursts (fusion).  Prepared: div2k; gopro, hide;
    # syntheticburst, zurich
    assert (counts["import_official"], counts["train"], counts["prepare"]) == (4, 7 + 2 + 5 + 1, 1 + 2 + 2)
    # SR: 3 deterministic rows (bicubic, rrdb, swinir) x 1 seed + 5 stochastic rows x 3 seeds + dpir_full and
    #     dpir_jump_wide x 1
    #     + the competitor checkpoints (esrgan, hat, srresnet) + the default's bring-your-own rows (rrdb_checkpoint,
    #     byo_sharp, lanczos), all deterministic;
    # deblur: 2 datasets x (3 deterministic + 2 competitor checkpoints (nafnet_official, restormer) + 3 stochastic
    #     x 3 seeds); burst: 2 deterministic + dpir x 3 seeds
    assert counts["restore"] == (3 + 5 * 3 + 2 + 3 + 3) + 2 * (3 + 2 + 3 * 3) + (2 + 3)
    # the export of rrdb_checkpoint's file; one download job per registry entry (tests/test_fetch_rules.py):
    # 8 dataset archives, 4 official backbones, 4 competitor checkpoints, 3 metric weights (LPIPS AlexNet,
    # TOPIQ-NR and its timm ResNet-50: fetch_metric_weights)
    assert counts["export_network"] == 1 and counts["fetch"] == 8 + 4 + 4 + 3


# ------------------------------------------------------------------------------------------- shards

@pytest.mark.slow
def test_sharded_restore_equals_unsharded(tmp_path):
    """A stochastic method (InDI, eps > 0) restored in 2 shards gives the same PNGs as in one job.
    The network is an 'official' file the test writes: no training job."""
    from baselines.indi.nets import InDINet

    torch.manual_seed(4)
    kw = {"hidden": 8, "dim_mults": [1, 2], "scale": 4, "eps": 0.05}
    torch.save(InDINet(**kw).state_dict(), tmp_path / "indi.pth")
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump({
        "networks": {"indi_off": {"arch": "indi", "task": "sr", "official": "indi.pth", "kwargs": kw}},
        "tasks": {"sr": {"methods": {
            "indi_one": {"kind": "indi", "network": "indi_off", "steps": 3},
            "indi_two": {"kind": "indi", "network": "indi_off", "steps": 3, "shards": 2}}}}}))
    run = [f"results/test/restored/sr/bundled/{m}/seed{s}/run.json" for m in ("indi_one", "indi_two") for s in (0,)]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "--configfile", str(ROOT / "config" / "test.yaml"), str(tmp_path / "shards.yaml"), "--"]
    # no separate dry run (~4 s of Snakefile parsing): the run's own log lists the jobs it ran
    r = subprocess.run(cmd + run, capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = r.stdout + r.stderr
    for job in ("restore_shard", "merge_shards", "import_official"):
        assert f"rule {job}:" in log
    assert "seed0.shard0of2/run.json" in log and "seed0.shard1of2/run.json" in log
    one, two = (tmp_path / "results/test/restored/sr/bundled" / m / "seed0" for m in ("indi_one", "indi_two"))
    pngs = sorted(p.name for p in one.glob("*.png"))
    assert len(pngs) == 2 and pngs == sorted(p.name for p in two.glob("*.png"))
    assert all((one / p).read_bytes() == (two / p).read_bytes() for p in pngs)
    rec = json.loads((two / "run.json").read_text())
    assert rec["merged_from"] == 2 and rec["images"] == json.loads((one / "run.json").read_text())["images"]
    assert not list(two.parent.glob("seed0.shard*"))
    again = subprocess.run(cmd + run, capture_output=True, text=True, check=False, timeout=120)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_prepare_writes_official_lr_aligned_with_the_centre_crop(tmp_path):
    """With lr: official the stored lq is the official LR, cropped at offset / scale of the HR crop."""
    from dpir.data.images import read_image
    from dpir.data.prepare import prepare
    from helpers import base_config

    arrays = _div2k(tmp_path / "div2k")
    cfg = base_config(tmp_path, datasets={"d": {"kind": "div2k", "path": str(tmp_path / "div2k"), "lr": "official",
                                                "test_crop": 16}},
                      tasks={"sr": {"test_datasets": ["d"]}})
    man = prepare(cfg, "sr", "d", splits=("test",))
    for i in man["splits"]["test"]["ids"]:
        gt = read_image(tmp_path / "data" / "sr" / "d" / "test" / "gt" / f"{i}.png")
        lq = read_image(tmp_path / "data" / "sr" / "d" / "test" / "lq" / f"{i}.png")
        assert lq.shape[-2:] == (gt.shape[-2] // 4, gt.shape[-1] // 4) == (4, 4)
        hr, lr = (torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in arrays[i])
        assert torch.equal(gt, hr[:, 4:20, 8:24])      # HR crop at (4, 8): multiples of the scale
        assert torch.equal(lq, lr[:, 1:5, 2:6])        # LR crop at (1, 2)
