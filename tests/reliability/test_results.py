"""Reliability of the result-producing stages (issue 11): concurrent duplicates, crash-safe
replacement, resume after an interruption, shards, stale networks and malformed results files.

Each test's docstring is one catalogue line: "Attempt: ... Expected: ...".
"""
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from helpers import ROOT, base_config

from dpir import atomic, paths
from dpir.checkpoint import check_trained_for, read_meta, save_network, training_hash
from dpir.cli import main
from dpir.data.prepare import prepare
from dpir.errors import DpirError

TASK, DS = "sr", "bundled"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The tiny config with the sr/bundled test and train splits prepared once (read-only here)."""
    cfg = base_config(tmp_path_factory.mktemp("reliability"), device="cpu", threads=1)
    prepare(cfg, TASK, DS)
    return cfg


@pytest.fixture
def cfg(shared, tmp_path):
    """The shared prepared data, with outputs of this test only."""
    c = copy.deepcopy(shared)
    c["out"] = str(tmp_path / "results")
    return c


def cli_args(cfg):
    return ["-q", "-c", str(ROOT / "config" / "test.yaml"), "--set", f"out={cfg['out']}",
            "--set", f"data_dir={cfg['data_dir']}", "--set", "device=cpu", "--set", "threads=1"]


def run_args(method="bicubic", seed=0):
    return ["--task", TASK, "--dataset", DS, "--method", method, "--seed", str(seed)]


def fake_trained(cfg, network, **train_over):
    """Save a randomly initialised ``network`` as if `dpir train` had trained it (with the config's
    training settings, or with ``train_over`` applied to them)."""
    from dpir.nets import build_network

    net_cfg = copy.deepcopy(cfg["networks"][network])
    net_cfg["train"].update(train_over)
    torch.manual_seed(0)
    model = build_network(net_cfg["arch"], **net_cfg["kwargs"])
    save_network(model, paths.network_dir(cfg, network), net_cfg["arch"], net_cfg["kwargs"], train=net_cfg["train"],
                 step=net_cfg["train"]["steps"], record={"config_hash": training_hash(net_cfg), "steps": net_cfg["train"]["steps"]})
    return net_cfg


def pngs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def siblings(out_dir):
    """Leftovers beside a run folder: partial and shard folders, hidden temporary and old folders (not
    lock files, which stay)."""
    return sorted(p.name for p in out_dir.parent.iterdir() if p.name.startswith(out_dir.name + ".")
                  or (p.name.startswith(f".{out_dir.name}.") and not p.name.endswith(".lock")))


def spawn(args, log_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    f = open(log_path, "w")  # noqa: SIM115 - closed by the caller once the process ends
    return subprocess.Popen([sys.executable, "-m", "dpir", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                            env=env), f


def wait_for_text(paths_, text, timeout=180):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(text in p.read_text() for p in paths_):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in every log: " + " | ".join(p.read_text()[-500:] for p in paths_))


def run_two_while_locked(target, args, tmp_path):
    """Start two `dpir <args>` processes while this test holds ``target``'s lock (so they must overlap),
    release it once both say they wait, and return their logs after asserting both exited 0."""
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with atomic.exclusive_lock(target):
        procs = [spawn(args, p) for p in logs]
        wait_for_text(logs, "waiting for")
    codes = [p.wait(timeout=300) for p, _ in procs]
    for _, f in procs:
        f.close()
    text = [p.read_text() for p in logs]
    assert codes == [0, 0], text
    return text


# ------------------------------------------------------------------------------------ 1. concurrency

def test_two_concurrent_restores_of_one_run_take_turns(cfg, tmp_path):
    """Attempt: two `dpir restore` processes of the same run at once (a job left running after Snakemake
    was killed, then a re-run). Expected: the second waits for the first's lock; both exit 0; the run
    folder holds every image its run.json lists and no temporary folder is left."""
    out = paths.restored_dir(cfg, TASK, DS, "bicubic", 0)
    text = run_two_while_locked(out, ["restore", *cli_args(cfg), *run_args()], tmp_path)
    rec = json.loads((out / "run.json").read_text())
    assert sorted(rec["images"]) == sorted(n[:-4] for n in pngs(out)) and rec["n_images"] == 2
    assert sum("while this one waited" in t for t in text) == 1       # the second reused the first's run
    assert siblings(out) == []


def test_two_concurrent_trainings_of_one_network_train_once(cfg, tmp_path):
    """Attempt: two `dpir train` of the same network at once. Expected: the second waits for the
    network's lock, then returns the checkpoint the first finished without training again; the
    checkpoint loads and no state.pt or half-written file remains."""
    from dpir.checkpoint import load_network

    net_dir = paths.network_dir(cfg, "udp_denoiser")
    text = run_two_while_locked(net_dir, ["train", *cli_args(cfg), "--network", "udp_denoiser"], tmp_path)
    assert sum("reusing" in t for t in text) == 1
    load_network(net_dir)
    assert read_meta(net_dir)["record"]["config_hash"] == training_hash(cfg["networks"]["udp_denoiser"])
    assert sorted(p.name for p in net_dir.iterdir()) == ["model.json", "model.safetensors", "train_log.json"]


def test_two_concurrent_imports_of_official_weights_import_once(cfg, tmp_path, caplog):
    """Attempt: two `dpir import-official` of one network at once (two threads that start while the
    network's lock is held) from a small official checkpoint file. Expected: both wait for the lock,
    one imports and the other reuses its result (same file, SHA-256 and kwargs) without importing
    again; the saved weights equal the file's and no half-written file is left."""
    import logging

    from helpers import same_weights

    from dpir.checkpoint import load_network
    from dpir.nets import build_network
    from dpir.official import import_official

    kw = {"upscale": 4, "in_chans": 3, "img_size": 16, "window_size": 8, "img_range": 1.0, "depths": [1],
          "embed_dim": 6, "num_heads": [1], "mlp_ratio": 1.0, "upsampler": "pixelshuffledirect",
          "resi_connection": "1conv"}
    torch.manual_seed(0)
    ref = build_network("swinir", **kw)
    weights = tmp_path / "swinir_official.pth"
    torch.save({"params": ref.state_dict()}, weights)
    cfg["networks"]["swinir_sr"].update(official=str(weights), kwargs=kw)
    net_dir = paths.network_dir(cfg, "swinir_sr")
    errors, outs = [], []

    def work():
        try:
            outs.append(import_official(cfg, "swinir_sr"))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    def said(text):
        return sum(text in r.getMessage() for r in caplog.records)

    threads = [threading.Thread(target=work) for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="dpir"):
        with atomic.exclusive_lock(net_dir):
            for t in threads:
                t.start()
            end = time.monotonic() + 60
            while said("waiting for") < 2 and time.monotonic() < end:
                time.sleep(0.05)
        for t in threads:
            t.join(timeout=120)
    assert errors == [] and len(outs) == 2 and said("waiting for") == 2
    assert said("imported by another process while this one waited: reusing") == 1
    meta = read_meta(net_dir)
    assert meta["official_source"] == f"file:{weights}" and meta["kwargs"] == kw
    assert same_weights(load_network(net_dir), ref)
    assert sorted(p.name for p in net_dir.iterdir()) == ["model.json", "model.safetensors"]


def test_atomic_write_text_from_many_threads(tmp_path):
    """Attempt: eight threads of one process write the same results file 25 times each (two scorings of
    one run). Expected: no write fails, the file holds one complete text, no temporary file is left
    (temporary names are unique per process and thread)."""
    target = tmp_path / "scores" / "seed0.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 20000}) for i in range(8)]
    errors = []

    def work(i):
        try:
            for _ in range(25):
                atomic.atomic_write_text(target, texts[i])
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and target.read_text() in texts
    assert [p.name for p in target.parent.iterdir()] == ["seed0.json"]


# ----------------------------------------------------------------------------- 2. crash-safe swaps

def fail_at_call(n):
    """A stand-in for the swap's rename that raises (a simulated crash) at its n-th call."""
    calls = []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == n:
            raise OSError("simulated crash between the two renames")
        os.rename(src, dst)
    return rename


def test_crash_between_the_renames_of_a_restore_keeps_and_recovers_the_old_run(cfg, monkeypatch):
    """Attempt: a restore replacing a finished run crashes after renaming the old run aside, before
    renaming the new one in. Expected: `<run>.old` holds the complete old run; the next restore puts it
    back before doing anything else (even when that restore fails too), then replaces it cleanly."""
    import dpir.restore as R
    from dpir.restore import restore_dataset

    restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False)
    out = paths.restored_dir(cfg, TASK, DS, "bicubic", 0)
    before, images = (out / "run.json").read_text(), pngs(out)
    monkeypatch.setattr(atomic, "_rename", fail_at_call(2))
    with pytest.raises(OSError, match="simulated crash"):
        restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False)
    monkeypatch.undo()
    assert not (out / "run.json").exists()
    assert (atomic.old_path(out) / "run.json").read_text() == before and pngs(atomic.old_path(out)) == images

    def fail(*a, **k):
        raise DpirError("simulated failure after the recovery")
    monkeypatch.setattr(R, "unique_temp_dir", fail)
    with pytest.raises(DpirError, match="simulated failure"):
        restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False)
    monkeypatch.undo()
    assert (out / "run.json").read_text() == before and pngs(out) == images       # recovered without asking
    rec = restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False)
    assert rec["resumed_images"] == 2        # the crashed run's finished images were kept and reused
    assert pngs(out) == images and siblings(out) == []


def test_crash_between_the_renames_of_a_merge_keeps_the_old_run_and_the_shards(cfg, monkeypatch):
    """Attempt: `dpir restore --merge-shards 2` replacing a merged run crashes between its renames.
    Expected: the old merged run is complete in `<run>.old` and both shards are still there; the next
    merge recovers and merges, then deletes the shards."""
    from dpir.restore import merge_shards, restore_dataset

    def shards():
        for k in range(2):
            restore_dataset(cfg, TASK, DS, "bicubic", 1, progress=False, shard=(k, 2))
    shards()
    merge_shards(cfg, TASK, DS, "bicubic", 1, 2)
    out = paths.restored_dir(cfg, TASK, DS, "bicubic", 1)
    before, images = (out / "run.json").read_text(), pngs(out)
    shards()
    monkeypatch.setattr(atomic, "_rename", fail_at_call(2))
    with pytest.raises(OSError, match="simulated crash"):
        merge_shards(cfg, TASK, DS, "bicubic", 1, 2)
    monkeypatch.undo()
    assert (atomic.old_path(out) / "run.json").read_text() == before
    assert all((out.with_name(f"seed1.shard{k}of2") / "run.json").exists() for k in range(2))
    rec = merge_shards(cfg, TASK, DS, "bicubic", 1, 2)
    assert rec["merged_from"] == 2 and rec["images"] == ["astronaut", "chelsea"]
    assert pngs(out) == images and siblings(out) == []


# ----------------------------------------------------------------------------------- 3. resume

def interrupt_on_write(monkeypatch, n, action=None):
    """Make the restore's n-th image write raise KeyboardInterrupt (or run ``action``); counts writes."""
    import dpir.restore as R

    real, calls = R.write_png, []

    def write(path, x, bits=8):
        calls.append(path.name)
        if len(calls) == n:
            if action is None:
                raise KeyboardInterrupt
            action()
        real(path, x, bits=bits)
    monkeypatch.setattr(R, "write_png", write)
    return calls


def test_interrupted_restore_resumes_per_image_with_identical_results(cfg, monkeypatch, tmp_path):
    """Attempt: Ctrl-C during the second image of a restore (FLOPs counted on the first), then the same
    restore again; then an interruption followed by a restore with a changed method config.
    Expected: the first image is kept in `<run>.partial/`; the rerun restores only the second and its
    PNGs, NFE and FLOPs equal an uninterrupted run's; a changed config discards the kept images."""
    from dpir.restore import partial_dir, restore_dataset

    fake_trained(cfg, "swinir_sr")
    ref_cfg = dict(cfg, out=str(tmp_path / "reference"))
    fake_trained(ref_cfg, "swinir_sr")
    ref = restore_dataset(ref_cfg, TASK, DS, "swinir", 0, progress=False)
    out = paths.restored_dir(cfg, TASK, DS, "swinir", 0)
    interrupt_on_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        restore_dataset(cfg, TASK, DS, "swinir", 0, progress=False)
    monkeypatch.undo()
    part = partial_dir(out)
    assert not out.exists() and sorted(p.name for p in part.glob("*.png")) == ["astronaut.png"]
    calls = interrupt_on_write(monkeypatch, 0)
    rec = restore_dataset(cfg, TASK, DS, "swinir", 0, progress=False)
    assert calls == ["chelsea.png"] and rec["resumed_images"] == 1
    assert pngs(out) == pngs(paths.restored_dir(ref_cfg, TASK, DS, "swinir", 0))
    for k in ("images", "nfe", "nfe_groups", "flops_per_image", "flops_input_size", "timing_note", "method_config_hash"):
        assert rec[k] == ref[k], k
    assert rec["flops_per_image"] > 0 and not part.exists() and siblings(out) == []
    # interrupted again, then run with another method config: nothing is reused
    monkeypatch.undo()
    interrupt_on_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        restore_dataset(cfg, TASK, DS, "swinir", 0, progress=False)
    monkeypatch.undo()
    calls = interrupt_on_write(monkeypatch, 0)
    cfg["tasks"][TASK]["methods"]["swinir"]["label"] = "SwinIR (relabelled)"
    rec = restore_dataset(cfg, TASK, DS, "swinir", 0, progress=False)
    assert calls == ["astronaut.png", "chelsea.png"] and rec["resumed_images"] == 0


def test_sigterm_during_a_restore_keeps_finished_images(cfg, monkeypatch, capsys):
    """Attempt: SIGTERM (a SLURM time limit) reaches `dpir restore` during its second image, then the
    job is run again. Expected: exit 130 with the first image kept in `<run>.partial/`; the rerun exits
    0, restores only the second image and lists both."""
    from dpir.restore import partial_dir

    out = paths.restored_dir(cfg, TASK, DS, "bicubic", 0)
    handler = signal.getsignal(signal.SIGTERM)
    interrupt_on_write(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert main(["restore", *cli_args(cfg), *run_args()]) == 130
    assert signal.getsignal(signal.SIGTERM) == handler          # the command's handler is removed again
    assert sorted(p.name for p in partial_dir(out).glob("*.png")) == ["astronaut.png"]
    monkeypatch.undo()
    calls = interrupt_on_write(monkeypatch, 0)
    assert main(["restore", *cli_args(cfg), *run_args()]) == 0
    rec = json.loads((out / "run.json").read_text())
    assert calls == ["chelsea.png"] and rec["resumed_images"] == 1 and rec["n_images"] == 2
    assert sorted(pngs(out)) == ["astronaut.png", "chelsea.png"]


# ------------------------------------------------------------------------------------- 4. shards

@pytest.mark.parametrize("argv, message", [
    (["--shard", "1of3"], "dpir: error: --shard expects K/N"),
    (["--shard", "a/b"], "dpir: error: --shard expects K/N"),
    (["--shard=-1/2"], "dpir: error: --shard expects K/N"),
    (["--shard", "3/2"], "dpir: error: --shard K/N needs whole numbers 0 <= K < N"),
    (["--shard", "0/0"], "dpir: error: --shard K/N needs whole numbers 0 <= K < N"),
    (["--merge-shards", "0"], "dpir: error: --merge-shards N needs the number of shards N >= 1"),
    (["--merge-shards", "-2"], "dpir: error: --merge-shards N needs the number of shards N >= 1"),
    (["--shard", "0/2", "--merge-shards", "2"], "dpir: error: --shard and --merge-shards exclude each other"),
])
def test_malformed_shard_arguments_are_one_line_errors(argv, message, capsys, tmp_path):
    """Attempt: `dpir restore` with a malformed --shard (1of3, a/b, -1/2, 3/2, 0/0), a zero or negative
    --merge-shards, or both options. Expected: exit 2 with one line `dpir: error: ...` saying what K/N
    or N must be; no traceback."""
    code = main(["restore", *run_args(), "--set", f"out={tmp_path}", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_more_shards_than_images_gives_empty_shards_that_merge(cfg, capsys):
    """Attempt: restore 2 images in 3 shards (shard 2/3 has no image) and merge them. Expected: the empty
    shard is a valid run with 0 images (exit 0, no UnboundLocalError); the merged run equals the
    unsharded one."""
    from dpir.restore import merge_shards, restore_dataset

    whole = restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False)
    ref = pngs(paths.restored_dir(cfg, TASK, DS, "bicubic", 0))
    for k in range(2):
        restore_dataset(cfg, TASK, DS, "bicubic", 0, progress=False, shard=(k, 3))
    assert main(["restore", *cli_args(cfg), *run_args(), "--shard", "2/3"]) == 0
    assert "restored 0 images" in capsys.readouterr().out
    empty = json.loads((paths.restored_dir(cfg, TASK, DS, "bicubic", 0).with_name("seed0.shard2of3") / "run.json").read_text())
    assert empty["images"] == [] and empty["n_images"] == 0 and empty["shard"] == [2, 3]
    merged = merge_shards(cfg, TASK, DS, "bicubic", 0, 3)
    assert merged["images"] == whole["images"] and merged["nfe"] == whole["nfe"]
    assert pngs(paths.restored_dir(cfg, TASK, DS, "bicubic", 0)) == ref


def test_merge_with_a_missing_shard_names_the_exact_restore_command(cfg, capsys):
    """Attempt: `dpir restore --merge-shards 12` before shard 0 of 12 exists. Expected: exit 2 with one
    line naming the shard folder and the exact command `dpir restore --task sr --dataset bundled
    --method bicubic --seed 0 --shard 0/12`."""
    code = main(["restore", *cli_args(cfg), *run_args(), "--merge-shards", "12"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "seed0.shard0of12 is missing" in err
    assert "run `dpir restore --task sr --dataset bundled --method bicubic --seed 0 --shard 0/12` first" in err


# ------------------------------------------------------------------------------- 5. stale networks

def test_network_trained_with_other_settings_is_refused_by_restore(cfg, capsys):
    """Attempt: restore with a network trained by hand with other settings (`dpir train --set
    networks.swinir_sr.train.steps=400`) than the config's. Expected: exit 2 with one line naming the
    network, both training hashes and `dpir train --network swinir_sr`; a matching network restores."""
    other = fake_trained(cfg, "swinir_sr", steps=400)
    current = training_hash(cfg["networks"]["swinir_sr"])
    code = main(["restore", *cli_args(cfg), *run_args("swinir")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"network 'swinir_sr' at {paths.network_dir(cfg, 'swinir_sr')} was trained with training config hash " \
           f"{training_hash(other)}, but the config's `networks.swinir_sr` entry hashes to {current}" in err
    assert "`dpir train --network swinir_sr`" in err
    fake_trained(cfg, "swinir_sr")
    assert main(["restore", *cli_args(cfg), *run_args("swinir")]) == 0
    # networks not trained here (official weights) are not checked
    check_trained_for(paths.network_dir(cfg, "swinir_sr"), {"arch": "swinir", "kwargs": {}, "official": "x.pth"})


def test_train_retrains_a_network_of_other_settings_and_deletes_a_stale_state(cfg, monkeypatch, caplog):
    """Attempt: `dpir train` of a network whose checkpoint and state.pt come from other training
    settings (steps=3), the run failing at its first step; then again. Expected: the log says it
    retrains and names both hashes; the mismatching state.pt is deleted, not just ignored; the finished
    checkpoint records the config's hash and no state.pt remains."""
    import logging

    from dpir.data.loader import TrainPatches
    from dpir.train.loop import train_network

    over = copy.deepcopy(cfg)
    over["networks"]["udp_denoiser"]["train"]["steps"] = 3
    train_network(over, "udp_denoiser", progress=False)
    train_network(over, "udp_denoiser", progress=False, stop_after=1)      # leaves state.pt of steps=3
    net_dir = paths.network_dir(cfg, "udp_denoiser")
    assert (net_dir / "state.pt").exists()
    real = TrainPatches.__getitem__

    def crash(self, *a, **k):
        raise DpirError("simulated crash at the first step")
    monkeypatch.setattr(TrainPatches, "__getitem__", crash)
    with caplog.at_level(logging.INFO, logger="dpir"), pytest.raises(DpirError, match="simulated"):
        train_network(cfg, "udp_denoiser", progress=False)
    text = caplog.text
    old_h, new_h = training_hash(over["networks"]["udp_denoiser"]), training_hash(cfg["networks"]["udp_denoiser"])
    assert f"retraining udp_denoiser: {net_dir / 'model.json'} was trained with training config hash {old_h}, " \
           f"the config now gives {new_h}" in text
    assert not (net_dir / "state.pt").exists()
    monkeypatch.setattr(TrainPatches, "__getitem__", real)
    rec = train_network(cfg, "udp_denoiser", progress=False)
    assert rec["config_hash"] == new_h == read_meta(net_dir)["record"]["config_hash"]
    assert not (net_dir / "state.pt").exists()
    check_trained_for(net_dir, cfg["networks"]["udp_denoiser"])        # passes now


# ------------------------------------------------------------------------------ 6. results files

def valid_record():
    return {"schema": 1, "task": TASK, "dataset": DS, "method": "bicubic", "seed": 0, "label": "Bicubic",
            "n_images": 1, "images": ["a"],
            "metrics": {"psnr_y": {"available": True, "lower_better": False, "convention": "c", "mean": 30.0,
                                   "per_image": {"a": 30.0}, "n_nonfinite": 0}},
            "cost": {"nfe": 0, "nfe_groups": {}, "nfe_note": "", "params_total": 0, "params_trained": 0,
                     "flops_per_image": None, "flops_input_size": None, "seconds_per_image": 0.1, "peak_rss_mib": 1.0}}


def _without(key):
    rec = valid_record()
    del rec[key]
    return rec


@pytest.mark.parametrize("content, problem", [
    ([], "a JSON list, not an object"),
    ({"foo": 1}, "no `task`, `dataset`, `method`, `seed`, `label`, `metrics`, `cost`, `n_images`, `images`"),
    (_without("metrics"), "no `metrics`"),
    ({**valid_record(), "metrics": {"psnr_y": {"available": True}}}, ("`metrics.psnr_y` has no `lower_better`, "
                                                                     "`convention`, `mean`, `per_image`")),
    ({**valid_record(), "seed": 3}, "it records the run sr/bundled/bicubic seed 3, not the one its path names"),
    ({**valid_record(), "cost": {"nfe": 0}}, "`cost.params_total` is None, not a number"),
])
def test_results_file_that_is_not_a_record_is_a_one_line_error(cfg, content, problem, capsys):
    """Attempt: `dpir tables` with a results file that is valid JSON but not a results record (`[]`,
    `{"foo": 1}`, no `metrics`, a metric entry without its fields, another run's record, no cost numbers).
    Expected: exit 2 with one line naming the file, what is wrong and `delete it and run dpir score
    --task ... --seed 0 again`; a valid record renders."""
    f = paths.scores(cfg, TASK, DS, "bicubic", 0)
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(valid_record()))
    assert main(["tables", *cli_args(cfg)]) == 0
    capsys.readouterr()
    f.write_text(json.dumps(content))
    code = main(["tables", *cli_args(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err == (f"dpir: error: results file {f} is not a results record ({problem}); delete it and run "
                   f"`dpir score --task sr --dataset bundled --method bicubic --seed 0` again\n")
