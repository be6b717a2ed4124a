"""scripts/job_times.py: benchmark files summed by task and stage (ablation-only jobs apart)."""
import sys

from helpers import ROOT, base_config

sys.path.insert(0, str(ROOT / "scripts"))
import job_times  # noqa: E402


def test_job_times_groups_by_task_and_ablation(tmp_path):
    out = tmp_path / "results"
    rows = {"train/swinir_sr.tsv": (10.0, 800.0), "train/udp_denoiser.tsv": (5.0, 700.0),
            "restore/sr_bundled_dpir_jump_ddim_seed0.tsv": (3.0, 900.0),
            "restore/sr_bundled_t6_tau10_seed1.tsv": (2.0, 750.0),
            "restore/deblur_bundled_t13_tau1_seed0.tsv": (1.0, 600.0),
            "restore/deblur_bundled_dpir_seed0.tsv": (4.0, 650.0), "tflops/sr.tsv": (7.0, 2000.0)}
    for rel, (s, rss) in rows.items():
        f = out / "benchmarks" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:01\t{rss}\n")
    totals = job_times.summarise(out, base_config(tmp_path))
    assert totals[("sr", "train")] == [10.0, 800.0, 1] and totals[("ablations", "train")] == [5.0, 700.0, 1]
    assert totals[("sr", "restore")] == [3.0, 900.0, 1] and totals[("deblur", "restore")] == [4.0, 650.0, 1]
    assert totals[("ablations", "restore")] == [3.0, 750.0, 2] and totals[("sr", "tflops")] == [7.0, 2000.0, 1]
