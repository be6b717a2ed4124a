"""Downloads are their own workflow jobs (rule fetch): every registry entry the paper DAG reads has one,
its stamp is the input of the jobs that read the entry, and `dpir fetch NAME --stamp FILE` writes it."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dpir import cli
from dpir.config import load_config
from dpir.workflow_facts import dataset_fetches, paper_fetch_names
from helpers import ROOT
from test_fetch import entry, env, server, sha  # noqa: F401  (fixtures)

PAPER = [ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"]


def test_dataset_fetches_are_what_prepare_reads():
    cfg = load_config(PAPER)
    assert dataset_fetches(cfg, "sr", "div2k") == ["div2k_train_hr", "div2k_train_lr_x4", "div2k_valid_hr",
                                                    "div2k_valid_lr_x4"]
    assert dataset_fetches(cfg, "deblur", "gopro") == ["gopro"]
    assert dataset_fetches(cfg, "deblur", "hide") == ["hide"]
    assert dataset_fetches(cfg, "burst", "syntheticburst") == ["syntheticburst_val"]
    assert dataset_fetches(cfg, "burst", "zurich") == ["zurich_raw2rgb"]
    # a split given by path is read from there: nothing to fetch; regenerated LR needs only the HR zip
    assert paper_fetch_names({"kind": "div2k", "path": "/data/div2k"}, "test", 4) == []
    assert paper_fetch_names({"kind": "div2k", "lr": "regenerate"}, "test", 4) == ["div2k_valid_hr"]
    assert dataset_fetches(load_config([ROOT / "config" / "config.yaml"]), "sr", "bundled") == []


def _dry_run_jobs(tmp_path, *configs):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n",
                        "--cores", "1", "--configfile", *map(str, configs)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", r.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            fields = dict(re.findall(r"^\s+(input|output|wildcards): (.*)$", block, re.M))
            jobs.append((m.group(1), fields))
    return jobs


@pytest.mark.slow
def test_paper_dry_run_lists_one_fetch_job_per_entry_before_its_readers(tmp_path):
    jobs = _dry_run_jobs(tmp_path, *PAPER[1:])
    fetched = sorted(f["wildcards"].removeprefix("entry=") for rule, f in jobs if rule == "fetch")
    assert fetched == sorted([
        "div2k_train_hr", "div2k_train_lr_x4", "div2k_valid_hr", "div2k_valid_lr_x4", "gopro", "hide",
        "syntheticburst_val", "zurich_raw2rgb",                                  # datasets
        "swinir_classical_x4", "rrdb_psnr_x4", "fftformer_gopro", "bsrt_weights",  # official backbones
        "esrgan_x4", "hat_srx4", "nafnet_gopro_width64", "restormer_motion_deblurring",   # competitor rows
        "lpips_alexnet", "topiq_nr_koniq", "timm_resnet50"])          # metric weights (fetch_metric_weights)
    stamp = "results/paper/fetched/{}.json".format
    prep = {f["wildcards"]: f.get("input", "") for rule, f in jobs if rule == "prepare"}
    assert stamp("div2k_valid_lr_x4") in prep["task=sr, dataset=div2k"]
    assert stamp("zurich_raw2rgb") in prep["task=burst, dataset=zurich"]
    imp = {f["wildcards"]: f.get("input", "") for rule, f in jobs if rule == "import_official"}
    assert imp["network=bsrt_burst"] == stamp("bsrt_weights")
    hat = next(f for rule, f in jobs if rule == "restore" and "method=hat" in f["wildcards"])
    assert stamp("hat_srx4") in hat["input"]
    # every score job waits for its metric presets' weights (LPIPS AlexNet, TOPIQ-NR + its ResNet-50)
    scores = [f["input"] for rule, f in jobs if rule == "score"]
    assert scores and all(stamp(n) in i for i in scores for n in ("lpips_alexnet", "topiq_nr_koniq", "timm_resnet50"))
    # the default config downloads nothing
    assert not [j for j in _dry_run_jobs(tmp_path / "d", ROOT / "config" / "config.yaml") if j[0] == "fetch"]


def test_fetch_stamp_records_the_verified_entry(env, server, tmp_path):  # noqa: F811
    data = b"weights" * 100
    server.files["/w/model.pth"] = data
    env(entry("model_x", server, "/w/model.pth", data))
    stamp = tmp_path / "out" / "fetched" / "model_x.json"
    assert cli.main(["fetch", "-q", "model_x", "--stamp", str(stamp)]) == 0
    rec = json.loads(stamp.read_text())
    assert rec["name"] == "model_x" and rec["sha256"] == sha(data)
    assert open(rec["path"], "rb").read() == data
    assert cli.main(["fetch", "-q", "model_x", "other", "--stamp", str(stamp)]) == 2     # one entry per stamp
