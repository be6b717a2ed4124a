"""DDP training: 2 processes on the gloo backend (CPU) train what 1 process trains at the same global
batch, resume exactly, and refuse bad launches with one line."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import dpir.train.launch as launch
from dpir import paths
from dpir.checkpoint import load_network
from dpir.cli import main
from dpir.data.prepare import prepare
from dpir.errors import DpirError
from dpir.train.loop import train_network
from helpers import base_config

NET = "mirnet_s"        # the denoiser: per-sample noise levels and noise in the loss
TRAIN = {"steps": 4, "batch": 4, "patch": 32, "checkpoint_every": 2}

# Tolerance of the 2-process weights against the 1-process ones: the all-reduce sums the two
# half-batch gradients in another order than autograd sums the 4 samples of one batch, so the
# gradients differ in their last float32 bits (~1e-7 relative).  Adam divides each gradient by its own
# running rms, so where a gradient element is itself at rounding level, those last bits decide its
# step (up to lr = 1e-3 either way): ONE such element moved 2.8e-5 apart on this project's second
# machine (its kernels round differently from the first's; all others were within 3e-6).  A DDP error
# (a rank on the wrong shard, a missing all-reduce) moves essentially every weight by ~lr.  So: every
# element within a tenth of one step (MAX_ATOL), and all but 0.1 % of them within ATOL.
ATOL = 1e-5
MAX_ATOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, cfg: dict, stop_after):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        train_network(cfg, NET, progress=False, stop_after=stop_after)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def ddp(cfg, world=2, stop_after=None):
    # forked, not spawned: a spawned rank re-imports torch and dpir (~3 s each launch); the ranks are
    # the same processes of the gloo group either way (torch re-creates its thread pools after a fork)
    mp.start_processes(_rank, args=(world, _free_port(), cfg, stop_after), nprocs=world, join=True,
                       start_method="fork")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = base_config(tmp, device="cpu", threads=1, networks={NET: {"train": TRAIN}})
    prepare(cfg, "sr", "bundled", splits=("train",))
    return cfg


def weights(cfg):
    return load_network(paths.network_dir(cfg, NET)).state_dict()


def test_two_gloo_processes_train_what_one_does_and_resume_exactly(cfg):
    one = train_network(cfg, NET, progress=False)
    ref = weights(cfg)
    two = dict(cfg, out=cfg["out"] + "_ddp")
    ddp(two, stop_after=3)                                  # killed after step 3: rank 0 left the state
    net_dir = paths.network_dir(two, NET)
    assert (net_dir / "state.pt").exists() and not (net_dir / "model.safetensors").exists()
    ddp(two)                                                # both ranks resume from it
    got = weights(two)
    meta = json.loads((net_dir / "model.json").read_text())
    assert meta["record"]["processes"] == 2 and meta["record"]["resumed_from"] == 3
    assert meta["record"]["config_hash"] == one["config_hash"]
    assert not (net_dir / "state.pt").exists()
    assert sorted(p.name for p in net_dir.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in paths.network_dir(cfg, NET).iterdir() if not p.name.startswith("."))
    diffs = {k: (got[k].float() - ref[k].float()).abs() for k in ref}
    worst = {k: float(d.max()) for k, d in diffs.items()}
    assert max(worst.values()) <= MAX_ATOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    far = sum(int((d > ATOL).sum()) for d in diffs.values())
    assert far <= 1e-3 * sum(d.numel() for d in diffs.values()), (far, sorted(worst.items(), key=lambda kv: -kv[1])[:5])
    from dpir.nets import build_network

    torch.manual_seed(cfg["networks"][NET]["train"]["seed"])           # the initial weights: training moved them
    init = build_network(cfg["networks"][NET]["arch"], **cfg["networks"][NET]["kwargs"]).state_dict()
    assert max(float((ref[k].float() - init[k].float()).abs().max()) for k in ref) > 100 * ATOL
    # the losses are the global batch's: equal within the same tolerance
    assert abs(meta["record"]["final_loss"] - one["final_loss"]) <= 1e-5


def test_global_batch_not_divisible_by_the_processes_is_one_line(cfg):
    bad = dict(cfg, out=cfg["out"] + "_bad")
    bad["networks"] = {**cfg["networks"], NET: {**cfg["networks"][NET], "train": {**cfg["networks"][NET]["train"],
                                                                                 "batch": 3}}}
    with pytest.raises(Exception, match=r"train.batch 3 is the global batch and must be divisible by the 2 "
                                        r"training processes; set train.batch to a multiple of 2"):
        ddp(bad)
    assert not (paths.network_dir(bad, NET) / "model.safetensors").exists()


def test_partial_torchrun_environment_is_one_line(monkeypatch, capsys):
    assert launch.distributed_env({}) is None
    assert launch.distributed_env(dict(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2", MASTER_ADDR="h",
                                       MASTER_PORT="1")) == launch.DistEnv(1, 1, 2)
    with pytest.raises(DpirError, match=r"^a distributed \(DDP\) launch needs the environment variables torchrun "
                                        r"sets; LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing \(found RANK, "
                                        r"WORLD_SIZE\): launch with `torchrun --nproc_per_node N -m dpir train"):
        launch.distributed_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(DpirError, match=r"RANK 2 is not in 0..WORLD_SIZE-1 \(2\)"):
        launch.distributed_env(dict(RANK="2", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="h", MASTER_PORT="1"))
    for k in launch.ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--network", NET, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dpir: error: a distributed (DDP) launch needs")


def test_gpus_flag_launches_torchrun_or_refuses_more_gpus_than_present(monkeypatch, capsys):
    for k in launch.ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["train", "--network", NET, "--gpus", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dpir: error: --gpus 4 asks for more GPUs than this machine shows (2 visible); "
                   "use --gpus 2 or fewer"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert main(["train", "--network", NET, "--gpus=1"]) == 2
    assert "no CUDA GPU is visible here; drop --gpus" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls = []
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert main(["train", "--gpus", "2", "--network", NET, "-c", "x.yaml"]) == 0
    assert calls == [[launch.sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                      "-m", "dpir", "train", "--network", NET, "-c", "x.yaml"]]
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd: 1)
    assert main(["train", "--gpus", "2", "--network", NET]) == 2
    assert "the 2 training processes of `dpir train --gpus 2` failed (exit status 1)" in capsys.readouterr().err
