"""Typed results (dpir.results): run.json and the results JSON as records, byte-identical to the old writers."""
import dataclasses
import json

import pytest

from dpir import paths
from dpir.data.prepare import prepare
from dpir.errors import DpirError
from dpir.restore import restore_dataset
from dpir.results import Cost, MetricScore, RunRecord, ScoreRecord, check_record
from dpir.score import score_run
from helpers import base_config

# the keys, in order, of the dict literals restore.py and score.py wrote before the record types
OLD_RUN_KEYS = [
    "schema", "task", "dataset", "method", "seed", "kind", "label", "method_config", "method_config_hash",
    "task_config_hash", "stochastic", "images", "n_images", "image_seed_rule", "nfe", "nfe_groups",
    "flops_per_image", "flops_input_size", "seconds_per_image", "seconds", "timing_note", "nfe_note",
    "params_total", "params_trained", "peak_rss_mib", "peak_cuda_mib", "png_bits", "shard", "tiled_modules",
    "tile", "run_key", "resumed_images", "provenance"]
OLD_SCORE_KEYS = [
    "schema", "task", "dataset", "method", "seed", "label", "kind", "stochastic", "metrics", "metric_options",
    "scored_from", "cost", "n_images", "images", "method_config", "method_config_hash", "config_hash", "provenance"]
OLD_COST_KEYS = ["nfe", "nfe_groups", "nfe_note", "params_total", "params_trained", "flops_per_image",
                 "flops_input_size", "seconds_per_image", "timing_note", "peak_rss_mib", "peak_cuda_mib"]
OLD_METRIC_KEYS = ["available", "lower_better", "convention", "per_image", "mean", "n_nonfinite"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny restore + score of bicubic on the bundled images (the test config)."""
    cfg = base_config(tmp_path_factory.mktemp("results"), device="cpu", threads=1)
    cfg["tasks"]["sr"]["metrics"] = ["psnr_y", "ssim_y"]
    prepare(cfg, "sr", "bundled", splits=("test",))
    rec = restore_dataset(cfg, "sr", "bundled", "bicubic", 0, progress=False)
    score = score_run(cfg, "sr", "bundled", "bicubic", 0)
    return (paths.restored_dir(cfg, "sr", "bundled", "bicubic", 0) / "run.json",
            paths.scores(cfg, "sr", "bundled", "bicubic", 0), rec, score)


def test_run_json_is_byte_identical_to_the_old_writer(run):
    run_path, _, rec, _ = run
    text = run_path.read_text()
    d = json.loads(text)
    assert list(d) == OLD_RUN_KEYS == RunRecord.keys()[:-1]          # merged_from: only in merged runs
    assert text == json.dumps({k: d[k] for k in OLD_RUN_KEYS}, indent=2)    # the old dict literal, indent 2
    r = RunRecord.read(run_path)
    assert r.to_json() == text and r.to_dict() == rec == d
    assert (r.n_images, r.images, r.png_bits, r.nfe, r.merged_from) == (2, ["astronaut", "chelsea"], 8, 0, None)


def test_score_json_is_byte_identical_to_the_old_writer(run):
    _, score_path, _, score = run
    text = score_path.read_text()
    d = json.loads(text)
    assert list(d) == OLD_SCORE_KEYS == ScoreRecord.keys() and list(d["cost"]) == OLD_COST_KEYS == Cost.keys()
    assert [list(m) for m in d["metrics"].values()] == [OLD_METRIC_KEYS, OLD_METRIC_KEYS]
    assert list(d["metrics"]) == ["psnr_y", "ssim_y"]
    assert text == json.dumps(d, indent=2)
    s = ScoreRecord.read(score_path)
    assert s.to_json() == text and s.to_dict() == score
    assert isinstance(s.cost, Cost) and isinstance(s.metrics["psnr_y"], MetricScore)
    assert s.metrics["psnr_y"].mean == pytest.approx(sum(s.metrics["psnr_y"].per_image.values()) / 2, abs=1e-12)
    assert check_record(d, ("sr", "bundled", "bicubic", "seed0.json")) is None


def test_round_trip_record_json_record(run):
    run_path, score_path, _, _ = run
    r = RunRecord.read(run_path)
    merged = dataclasses.replace(r, shard=None, merged_from=2, run_key=None)
    again = RunRecord.from_json(merged.to_json())
    assert again == merged and list(json.loads(merged.to_json()))[-1] == "merged_from"
    s = ScoreRecord.read(score_path)
    off = MetricScore(False, True, "LPIPS AlexNet", reason="weights not cached", fix="run `dpir fetch lpips`")
    s2 = dataclasses.replace(s, metrics={**s.metrics, "lpips_alex": off})
    back = ScoreRecord.from_json(s2.to_json())
    assert back == s2 and list(json.loads(s2.to_json())["metrics"]["lpips_alex"]) == [
        "available", "lower_better", "convention", "reason", "fix"]
    scored = MetricScore.scored(False, "c", {"a": 1.0, "b": float("inf"), "c": 3.0})
    assert (scored.mean, scored.n_nonfinite) == (2.0, 1)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("nfe"), "no key `nfe`"),
    (lambda d: d.update(extra=1), "unknown key `extra`"),
    (lambda d: d.update(seed="0"), 'key `seed` is "0", not an integer'),
    (lambda d: d.update(stochastic=1), "key `stochastic` is 1, not true or false"),
    (lambda d: d.update(params_total=True), "key `params_total` is true, not an integer"),
    (lambda d: d.update(n_images=3), "key `n_images` is 3 but `images` lists 2"),
])
def test_bad_run_record_is_one_line_naming_file_and_key(run, tmp_path, change, message):
    run_path, _, _, _ = run
    d = json.loads(run_path.read_text())
    change(d)
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(DpirError) as e:
        RunRecord.read(bad)
    assert str(e.value) == f"{bad}: {message}; run `dpir restore` for it again"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["cost"].pop("timing_note"), "no key `cost.timing_note`"),
    (lambda d: d["metrics"]["psnr_y"].update(mean="x"), 'key `metrics.psnr_y.mean` is "x", not a number or null'),
    (lambda d: d["metrics"]["ssim_y"].pop("per_image"), "a metric with available true has no `per_image`"),
    (lambda d: d["metrics"].update(psnr_y=[]), "`metrics.psnr_y` is a JSON list, not an object"),
    (lambda d: d.update(schema=2), "key `schema` is 2: written by another version of dpir (this one reads 1)"),
])
def test_bad_score_record_is_one_line_naming_file_and_key(run, tmp_path, change, message):
    _, score_path, _, _ = run
    d = json.loads(score_path.read_text())
    change(d)
    bad = tmp_path / "seed0.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(DpirError) as e:
        ScoreRecord.read(bad)
    assert str(e.value) == f"{bad}: {message}; delete it and run `dpir score` for it again"
    assert "\n" not in str(e.value)


def test_not_json_and_old_import_path(tmp_path):
    f = tmp_path / "run.json"
    f.write_text("{")
    with pytest.raises(DpirError, match=r"run\.json is not valid JSON .*; run `dpir restore` for it again$"):
        RunRecord.read(f)
    from dpir import score

    assert score.check_record is check_record and score.check_record([]) == "a JSON list, not an object"
