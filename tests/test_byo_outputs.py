"""Method kind ``outputs`` (dpir/outputs.py): a folder restored by code that knows nothing about dpir
(``examples/byo/lanczos_folder.py``, OpenCV's Lanczos), imported, scored and tabled like any run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from dpir import paths
from dpir.data.prepare import prepare
from dpir.errors import DpirError
from dpir.outputs import scan
from dpir.restore import merge_shards, restore_dataset
from dpir.results import RunRecord, architecture_of, check_record, declared_cost
from dpir.score import load_scores, score_run
from helpers import ROOT, base_config

OLD_RUN_KEYS = RunRecord.keys()[:-1]       # every run.json key (merged_from: only in merged runs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The bundled SR test set prepared, restored by the standalone Lanczos script into a folder."""
    tmp = tmp_path_factory.mktemp("byo")
    cfg = base_config(tmp, device="cpu", threads=1)
    cfg["tasks"]["sr"]["metrics"] = ["psnr_y", "ssim_y"]
    methods = cfg["tasks"]["sr"]["methods"]
    methods["imported"] = {"kind": "outputs", "path": "{out}/made/{task}/{dataset}", "nfe": 1, "params": 1234,
                           "tflops": 0.05, "label": "Lanczos (imported)", "make": "python lanczos_folder.py ..."}
    methods["undeclared"] = {"kind": "outputs", "path": "{out}/made/{task}/{dataset}", "label": "Lanczos (no cost)"}
    prepare(cfg, "sr", "bundled", splits=("test",))
    lq = paths.prepared(cfg, "sr", "bundled") / "test" / "lq"
    made = tmp / "results" / "made" / "sr" / "bundled"
    done = subprocess.run([sys.executable, str(ROOT / "examples/byo/lanczos_folder.py"), "--lq", str(lq), "--out",
                           str(made), "--scale", "4"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"wrote 2 images to {made}"
    return cfg, lq, made


def test_import_score_and_table(setup):
    cfg, lq, made = setup
    rec = restore_dataset(cfg, "sr", "bundled", "imported", 0, progress=False)
    run_dir = paths.restored_dir(cfg, "sr", "bundled", "imported", 0)
    assert rec["images"] == ["astronaut", "chelsea"] and rec["kind"] == "outputs" and not rec["stochastic"]
    assert (rec["nfe"], rec["flops_per_image"], rec["params_total"], rec["seconds_per_image"]) == \
        (1, 50_000_000_000, 1234, None)
    assert rec["provenance"]["imported_from"]["path"] == str(made)
    text = (run_dir / "run.json").read_text()
    assert list(json.loads(text)) == OLD_RUN_KEYS                  # the keys of every other run
    assert RunRecord.read(run_dir / "run.json").to_dict() == rec
    # the imported PNG holds exactly OpenCV's Lanczos output of the prepared LQ image
    for image_id in rec["images"]:
        bgr = cv2.imread(str(lq / f"{image_id}.png"), cv2.IMREAD_COLOR)
        want = cv2.resize(bgr, (bgr.shape[1] * 4, bgr.shape[0] * 4), interpolation=cv2.INTER_LANCZOS4)[..., ::-1]
        assert np.array_equal(np.asarray(Image.open(run_dir / f"{image_id}.png").convert("RGB")), want)
    # an import of unchanged files is not repeated
    stamp = (run_dir / "run.json").stat().st_mtime_ns
    assert restore_dataset(cfg, "sr", "bundled", "imported", 0, progress=False) == rec
    assert (run_dir / "run.json").stat().st_mtime_ns == stamp

    score = score_run(cfg, "sr", "bundled", "imported", 0)
    assert score["metrics"]["psnr_y"]["available"] and score["cost"]["seconds_per_image"] is None
    assert check_record(score) is None
    assert declared_cost(score) == {"nfe": 1, "params": 1234, "tflops": 0.05}
    restore_dataset(cfg, "sr", "bundled", "undeclared", 0, progress=False)
    score_run(cfg, "sr", "bundled", "undeclared", 0)
    restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    score_run(cfg, "sr", "bundled", "bicubic", 0)

    from dpir.report.analysis import cost_table
    from dpir.report.tables import build_table

    records = load_scores(cfg["out"], "sr")
    t = build_table(records, "sr_bundled", "t", ["psnr_y"], ["bicubic", "imported", "undeclared"])
    rows = {r["Method"]: r for r in t.rows}
    imp, und, bic = rows["Lanczos (imported)"], rows["Lanczos (no cost)"], rows["Bicubic"]
    mark = "[^sr-bundled-2]"
    assert (imp["NFE"], imp["Params total (M)"], imp["Params trained (M)"], imp["TFLOPs/img"], imp["s/img"]) == \
        (f"1 (declared){mark}", "0.001 (declared)", "0.001 (declared)", "0.05 (declared)", "n/a")
    assert (und["NFE"], und["Params total (M)"], und["TFLOPs/img"], und["s/img"]) == \
        ("n/a[^sr-bundled-3]", "n/a", "n/a", "n/a")
    assert imp["images × seeds"] == "2 × 1" and imp["psnr_y ↑ [dB]"].startswith(f"{score['metrics']['psnr_y']['mean']:.2f} [")
    assert bic["NFE"] == "0" and bic["s/img"] != "n/a"                    # measured rows as before
    assert (f"{mark}: Lanczos (imported): restored outside the harness and imported from a folder (kind `outputs`); "
            "its NFE, parameters and TFLOPs are the values its config entry declares, not measured (n/a: not "
            "declared), and its time is not measured.") in t.footnotes
    num = {n["method"]: n for n in t.numeric}
    assert (num["imported"]["nfe"], num["imported"]["tflops"], num["imported"]["seconds"],
            num["imported"]["cost_declared"]) == (1, 0.05, None, True)
    assert "cost_declared" not in num["bicubic"]
    c = cost_table(records, "bicubic", "sr_cost", "cost", ["bicubic", "imported"])
    crow = {r["Method"].split("[")[0]: r for r in c.rows}["Lanczos (imported)"]
    assert (crow["NFE"], crow["TFLOPs/img"], crow["s/img"], crow["peak RSS (MiB)"]) == \
        ("1 (declared)", "0.05 (declared)", "n/a", "n/a")


def test_architecture_is_shown_as_a_footnote(setup):
    from dpir.report.tables import build_table

    cfg, _, _ = setup
    restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    rec = score_run(cfg, "sr", "bundled", "bicubic", 0)
    assert architecture_of(rec) is None
    rec["provenance"]["architecture"] = "ESRGAN (RRDBNet)"
    t = build_table([rec], "x", "x", ["psnr_y"])
    assert t.rows[0]["Method"] == "Bicubic[^x-1]" and "[^x-1]: Bicubic: network architecture ESRGAN (RRDBNet)." in \
        t.footnotes


def test_tflops_rows_of_outputs_are_declared(setup):
    from dpir.tflops import tflops_table, write_tflops

    cfg, _, _ = setup
    rows = tflops_table(cfg, "sr", 64, 64, methods=["imported", "undeclared"])
    assert [(r["method"], r["declared"], r["nfe"], r["total_tflops"]) for r in rows] == \
        [("imported", True, 1, 0.05), ("undeclared", True, None, None)]
    import dpir.tflops as tf

    orig = tf.tflops_table
    tf.tflops_table = lambda *a, **k: rows
    try:
        out = write_tflops(cfg, "sr", cfg["out"], 64, 64)
    finally:
        tf.tflops_table = orig
    md = json.loads(out.read_text())["markdown"].splitlines()
    assert md[2:] == ["| Lanczos (imported) | 1 (declared) | not measured (restored outside the harness) | "
                      "0.05 (declared) |",
                      "| Lanczos (no cost) | n/a | not measured (restored outside the harness) | n/a |"]


def _bad_folder(cfg, name: str):
    """A copy of the ground truth (a perfect restoration) as the folder of a new outputs row."""
    gt = paths.prepared(cfg, "sr", "bundled") / "test" / "gt"
    folder = paths.restored_dir(cfg, "sr", "bundled", "x", 0).parent.parent / f"src_{name}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(gt, folder)
    cfg["tasks"]["sr"]["methods"][name] = {"kind": "outputs", "path": str(folder)}
    return folder


def test_a_perfect_folder_scores_infinite_psnr(setup):
    cfg, _, _ = setup
    _bad_folder(cfg, "perfect")
    restore_dataset(cfg, "sr", "bundled", "perfect", 0, progress=False)
    rec = score_run(cfg, "sr", "bundled", "perfect", 0)
    assert rec["metrics"]["psnr_y"]["n_nonfinite"] == 2 and rec["metrics"]["ssim_y"]["mean"] == 1.0


@pytest.mark.parametrize("damage, problem", [
    (lambda f: (f / "chelsea.png").unlink(), "1 missing (no <id>.png): chelsea"),
    (lambda f: shutil.copy(f / "chelsea.png", f / "zebra.png"),
     "1 extra (not a test image of the manifest): zebra.png"),
    (lambda f: shutil.copy(f / "chelsea.png", f / "chelsea.tif"), "1 more than one file for one image: chelsea"),
    (lambda f: (f / "chelsea.png").rename(f / "chelsea.jpg"),
     "1 lossy format (.jpg/.jpeg/.webp; save as PNG): chelsea.jpg"),
    (lambda f: (f / "chelsea.png").write_bytes(b"not a png"), "1 unreadable: chelsea.png (UnidentifiedImageError)"),
    (lambda f: Image.open(f / "chelsea.png").convert("L").save(f / "chelsea.png"),
     "1 not RGB (mode, channels; 3 needed): chelsea.png (L, 1)"),
    (lambda f: Image.open(f / "chelsea.png").convert("RGBA").save(f / "chelsea.png"),
     "1 not RGB (mode, channels; 3 needed): chelsea.png (RGBA, 4)"),
    (lambda f: Image.new("RGB", (10, 12)).save(f / "chelsea.png"),
     "1 wrong size (width x height): chelsea.png (10x12, expected 64x64)"),
])
def test_a_bad_folder_is_one_line_naming_the_images(setup, damage, problem):
    cfg, _, _ = setup
    folder = _bad_folder(cfg, "bad")
    damage(folder)
    with pytest.raises(DpirError) as e:
        restore_dataset(cfg, "sr", "bundled", "bad", 0, progress=False)
    assert str(e.value) == (f"tasks.sr.methods.bad: the outputs folder {folder} does not match the 2 test images of "
                            f"sr/bundled: {problem}")
    assert not paths.restored_dir(cfg, "sr", "bundled", "bad", 0).exists()


def test_problems_are_listed_up_to_five_then_counted(tmp_path):
    gt, out = tmp_path / "gt", tmp_path / "out"
    gt.mkdir(), out.mkdir()
    ids = [f"im{i}" for i in range(8)]
    for i in ids:
        Image.new("RGB", (4, 4)).save(gt / f"{i}.png")
    Image.new("RGB", (4, 4)).save(out / "im0.png")
    for i in range(7):
        Image.new("RGB", (4, 4)).save(out / f"other{i}.png")
    files, problems = scan(out, ids, gt)
    assert list(files) == ["im0"]
    assert problems == ["7 missing (no <id>.png): im1, im2, im3, im4, im5 +2 more",
                        "7 extra (not a test image of the manifest): other0.png, other1.png, other2.png, other3.png, "
                        "other4.png +2 more"]


def test_folder_shard_and_key_errors(setup):
    cfg, _, _ = setup
    methods = cfg["tasks"]["sr"]["methods"]
    methods["absent"] = {"kind": "outputs", "path": "{out}/nowhere/{task}", "make": "python make.py"}
    out = cfg["out"]
    with pytest.raises(DpirError, match=rf"^tasks\.sr\.methods\.absent\.path: the folder {out}/nowhere/sr does not "
                                        r"exist; make them with its `make` command \(python make\.py\) or fix `path`$"):
        restore_dataset(cfg, "sr", "bundled", "absent", 0, progress=False)
    with pytest.raises(DpirError, match="kind 'outputs': its folder is imported in one go, so --shard does not apply"):
        restore_dataset(cfg, "sr", "bundled", "imported", 0, progress=False, shard=(0, 2))
    with pytest.raises(DpirError, match="kind 'outputs' and is never sharded"):
        merge_shards(cfg, "sr", "bundled", "imported", 0, 2)
    methods["wrong"] = {"kind": "outputs", "path": "{out}/made/{task}/{dataset}", "nfe": 1.5}
    with pytest.raises(DpirError, match=r"^tasks\.sr\.methods\.wrong\.nfe: the declared nfe must be a whole number "
                                        r">= 0 \(or left out for n/a\), got 1\.5$"):
        restore_dataset(cfg, "sr", "bundled", "wrong", 0, progress=False)
    from dpir.restore import build

    with pytest.raises(DpirError, match="is of kind 'outputs' .*it has no model to build or measure"):
        build(cfg, "sr", "imported")


def test_cli_restore_prints_the_import(setup, capsys, tmp_path):
    cfg, _, made = setup
    from dpir import cli

    # the test config plus the row, as a user's config file would add it
    from helpers import write_yaml

    extra = write_yaml(tmp_path / "byo.yaml", {
        "out": cfg["out"], "data_dir": cfg["data_dir"], "device": "cpu",
        "tasks": {"sr": {"methods": {"imported_cli": {"kind": "outputs", "path": str(made), "nfe": 3}}}}})
    rc = cli.main(["restore", "-c", str(ROOT / "config/test.yaml"), "-c", str(extra), "--task", "sr", "--dataset",
                   "bundled", "--method", "imported_cli", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert capsys.readouterr().out == (f"imported 2 images of imported_cli from {made} (cost as declared: NFE 3)\n")


def test_cli_export_calls_export_network(setup, monkeypatch, capsys, tmp_path):
    """`dpir export` hands the config, network, layout and destination to dpir.export.export_network."""
    import dpir.export
    from dpir import cli

    calls = []

    def fake(config, network, layout, dest=None):
        calls.append((config["out"], network, layout, dest))
        return tmp_path / "written.pth"
    monkeypatch.setattr(dpir.export, "export_network", fake)
    cfg, _, _ = setup
    args = ["export", "-c", str(ROOT / "config/test.yaml"), "--set", f"out={cfg['out']}", "--network", "swinir_sr",
            "--layout", "basicsr"]
    assert cli.main([*args, "--out", str(tmp_path / "x.pth")]) == 0
    assert cli.main(args) == 0
    assert calls == [(cfg["out"], "swinir_sr", "basicsr", str(tmp_path / "x.pth")),
                     (cfg["out"], "swinir_sr", "basicsr", None)]
    assert capsys.readouterr().out == f"exported swinir_sr (basicsr layout) to {tmp_path / 'written.pth'}\n" * 2
    with pytest.raises(SystemExit):
        cli.main([*args[:-1], "onnx"])
