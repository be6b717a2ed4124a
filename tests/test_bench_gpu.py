"""scripts/bench_gpu.py: its jobs file is fresh, and it runs with only torch & co. installed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpir import plan

ROOT = Path(__file__).resolve().parent.parent
#: what the full install has and a rented GPU box may not: each stub raises ImportError on import
NOT_INSTALLED = ("yaml", "jsonschema", "pyiqa", "lpips", "snakemake", "scipy", "skimage")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """`bench_gpu.py --device cpu --tiny` in a fresh interpreter that cannot import the full install,
    started when first requested and awaited by the test that reads it: the jobs-file test asks for it
    first, so its META counting (one thread) and this run (one thread) overlap on a 2-core machine."""
    tmp = tmp_path_factory.mktemp("bench")
    stubs = tmp / "stubs"
    for name in NOT_INSTALLED:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test stub)')\n")
    out = tmp / "bench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--device", "cpu", "--tiny",
                             "--precisions", "fp32", "--out", str(out)], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict = {}

    def wait():
        if not result:
            try:
                _, err = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            result.update(returncode=proc.returncode, stderr=err, out=out)
        return result
    yield wait
    if proc.poll() is None:       # only the jobs-file test ran: stop the run nobody reads
        proc.kill()
        proc.communicate()


def test_committed_jobs_file_is_fresh(tmp_path, bench_run):
    """benchmarks/paper_jobs.json is what `python -m dpir.plan --config config/paper.yaml --export-jobs`
    writes now (re-run it after changing paper.yaml, an architecture or a trainer)."""
    from dpir.config import load_config

    cfg = load_config([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"],
                      {"out": str(tmp_path / "results"), "data_dir": str(tmp_path / "data")})
    fresh = json.loads(json.dumps(plan.export_jobs(cfg)))
    committed = json.loads(plan.JOBS_FILE.read_text())
    assert committed == fresh, ("benchmarks/paper_jobs.json is stale: run `python -m dpir.plan --config "
                                "config/paper.yaml --export-jobs benchmarks/paper_jobs.json`")
    assert [j["job"] for j in fresh["jobs"]] == ["mirnet_s", "fusion_sr", "fusion_deblur", "fusion_burst",
                                                 "sr/dpir_jump_ddim"]
    assert fresh["jobs"][-1]["nfe"] == 51


def test_runs_without_the_full_install(bench_run):
    proc = bench_run()
    assert proc["returncode"] == 0, proc["stderr"][-3000:]
    out = proc["out"]
    data = json.loads(out.read_text())
    assert data["format"] == plan.BENCH_FORMAT and data["tiny"] is True and data["accelerator"] is None
    assert [(r["job"], r["kind"], r["precision"], r["status"]) for r in data["results"]] == [
        ("mirnet_s", "train", "fp32", "ok"), ("fusion_sr", "train", "fp32", "ok"),
        ("fusion_deblur", "train", "fp32", "ok"), ("fusion_burst", "train", "fp32", "ok"),
        ("sr/dpir_jump_ddim", "restore", "fp32", "ok")]
    for r in data["results"]:
        assert r["achieved_tflops"] > 0 and r["steps_per_s"] > 0 and r["seconds"] > 0
    train = data["results"][0]
    assert train["steps"] == 1 and train["batch"] == 1 and train["patch"] == 32 and train["flops_per_step"] > 0
    restore = data["results"][-1]
    assert (restore["height"], restore["width"], restore["nfe"]) == (32, 32, 3)
    # what it wrote is what `dpir plan --bench` reads
    assert plan.read_bench(out)["results"] == data["results"]
