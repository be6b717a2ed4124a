"""The one training loop: seeded, resumable, with a progress bar and safetensors checkpoints.

Resume is exact: the training state (weights, Adam moments, LR schedule, both generators, step)
is saved every ``checkpoint_every`` steps to ``state.pt``; a restarted run continues from it and
ends with bit-identical weights to an uninterrupted run (tested).  A state saved for a different
training config is not resumed (the config hash is stored with it) but deleted with a warning, and a
finished run leaves no ``state.pt`` behind.

``dpir train`` holds an exclusive lock on the network (``networks/.<network>.lock``) for the whole run:
a second ``dpir train`` of the same network waits, then returns the checkpoint the first one finished
(when it matches the config) instead of writing the same files at the same time.  A checkpoint
trained with another training config is retrained, never reused (the log says so); the networks a
trainer loads (frozen backbones) are checked the same way (:func:`dpir.checkpoint.check_trained_for`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch

from dpir.atomic import atomic_file, exclusive_lock, file_stamp
from dpir.checkpoint import (SAMPLING, META_FILE, atomic_write_text, check_trained_for, read_meta, save_network, train_hash,
                             trained_hash, training_hash)
from dpir.config import network_config
from dpir.data.loader import TrainPatches
from dpir.rng import sample_generators
from dpir.errors import DpirError, UnknownNameError
from dpir.train import TRAINERS
from dpir.train.base import TrainContext, TrainSpec
from dpir.train.launch import DistEnv, all_reduce_mean, barrier, broadcast_object

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def get_trainer(name: str):
    """The trainer factory registered as ``name`` (through the registry: relative targets, declared keys)."""
    return TRAINERS.load(name)




def _save_state(path: Path, spec: TrainSpec, opt, sched, scaler, step, chash, losses) -> None:
    with atomic_file(path) as tmp:
        torch.save({"model": spec.model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(), "step": step, "sampling": SAMPLING, "config_hash": chash,
                    "losses": losses}, tmp)


def _load_state(state_path: Path, chash: str, env: DistEnv) -> dict | None:
    """The resumable state in ``state_path`` if it was saved for this training config, else None (and
    rank 0 deletes it, after every rank has looked)."""
    state, why = None, None
    if state_path.exists():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # a half-written state from a crash: start again, say so
            why = f"deleting unreadable training state {state_path} ({e}); starting from step 0"
        if state is not None and state.get("config_hash") != chash:
            why = (f"deleting {state_path}: it was saved for training config hash {state.get('config_hash')}, "
                   f"the config now gives {chash}; starting from step 0")
        elif state is not None and state.get("sampling") != SAMPLING:
            why = (f"deleting {state_path}: it was saved under another sampling scheme "
                   f"({state.get('sampling', 'one data generator')}, now {SAMPLING}); starting from step 0")
    barrier(env)
    if why is not None:
        if env.main:
            log.warning("%s", why)
            state_path.unlink(missing_ok=True)
        return None
    return state


def fit(spec: TrainSpec, data: TrainPatches, train_cfg: dict, out_dir: str | Path, *, arch: str, kwargs: dict,
        device: torch.device, seed: int, progress: bool = True, stop_after: int | None = None,
        record: dict | None = None, env: DistEnv | None = None) -> dict:
    """Train ``spec.model`` for ``train_cfg['steps']`` steps on ``data``; returns the training record.

    Step ``s`` trains on samples ``[s B, (s + 1) B)`` of ``data`` (``B`` = ``train.batch``, the
    global batch; under DDP each of the ``env.world`` processes takes its share and the gradients are
    averaged), and the loss of sample ``n`` draws from its own generator (:func:`dpir.rng.sample_generators`,
    stream ``"loss"``), so the run does not depend on workers or processes.  Only rank 0 writes.

    ``stop_after`` ends the run early after that many steps of this call, leaving the resumable
    state behind (used to test resume; a killed job leaves the same state).
    """
    from tqdm import tqdm

    from dpir.data.loader import StepBatches, train_loader
    from dpir.precision import autocast, check_precision, grad_scaler, memory_format, setup_backends, to_memory_format

    env = env or DistEnv()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps, batch = int(train_cfg["steps"]), int(train_cfg.get("batch", 8))
    every = int(train_cfg.get("checkpoint_every", max(1, min(steps, 100))))
    precision = check_precision(train_cfg.get("precision", "fp32"), device, "train.precision")
    channels_last = bool(train_cfg.get("channels_last", False))
    setup_backends(device, tf32=bool(train_cfg.get("tf32", True)))
    chash = train_hash(train_cfg, arch, kwargs, seed)
    model = spec.model.to(device, memory_format=memory_format(channels_last))
    params = list(spec.params) if spec.params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(train_cfg.get("lr", 2e-4)), betas=tuple(train_cfg.get("betas", (0.9, 0.999))))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(train_cfg.get("lr_every", steps + 1)),
                                            gamma=float(train_cfg.get("lr_decay", 1.0)))
    scaler = grad_scaler(precision, device)
    batches = StepBatches(batch, steps, rank=env.rank, world=env.world)      # checks batch % world first
    start, losses = 0, []
    state_path = out_dir / STATE_FILE
    state = _load_state(state_path, chash, env)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, losses = int(state["step"]), list(state["losses"])
        log.info("resuming %s from step %d", out_dir, start)
    elif env.world > 1:       # the same seed gives the same initial weights; make sure of it
        import torch.distributed as dist

        for t in model.state_dict().values():
            dist.broadcast(t, src=0)
    batches.start = start
    loader = train_loader(data, batches, workers=int(train_cfg.get("workers", 0)), pin_memory=device.type == "cuda",
                          prefetch=int(train_cfg.get("prefetch", 2)))
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=out_dir.name, disable=not (progress and env.main),
               mininterval=2.0, dynamic_ncols=True)
    done_this_call = 0
    for step, b in zip(bar, loader):
        b = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        b = to_memory_format(b, channels_last)
        gens = sample_generators(seed, batches.indices(step), "loss")
        with autocast(precision, device):
            loss = spec.loss(b, gens)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        value = loss.detach().float().reshape(1)
        if env.world > 1:   # one all-reduce: the gradients and the loss, averaged over the processes
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            all_reduce_mean([p.grad for p in params] + [value], env)
        if not torch.isfinite(value).all():
            raise DpirError(f"training of {out_dir.name} diverged at step {step + 1} (loss {value.item()}); "
                            f"lower `train.lr` in the config")
        if train_cfg.get("grad_clip"):
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, float(train_cfg["grad_clip"]))
        scaler.step(opt)
        scaler.update()
        sched.step()
        losses.append(float(value))
        bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        done_this_call += 1
        stop = stop_after is not None and done_this_call >= stop_after and step + 1 < steps
        if ((step + 1) % every == 0 and step + 1 < steps or stop) and env.main:
            _save_state(state_path, spec, opt, sched, scaler, step + 1, chash, losses)
        if stop:
            barrier(env)
            return {"stopped_at": step + 1}
    bar.close()
    seconds = time.perf_counter() - t0
    n_trained = sum(p.numel() for p in params)
    rec = {"steps": steps, "batch": batch, "patch": train_cfg.get("patch"), "seed": seed, "config_hash": chash,
           "trained_params": n_trained, "total_params": sum(p.numel() for p in model.parameters()),
           "seconds_this_run": round(seconds, 2), "resumed_from": start, "final_loss": losses[-1] if losses else None,
           "loss_curve": losses[:: max(1, len(losses) // 200)], "device": str(device),
           "train_images": len(data.store), "train_samples_seen": steps * batch, **(record or {})}
    if env.world > 1:
        rec.update(processes=env.world, precision=precision)
    elif precision != "fp32":
        rec["precision"] = precision
    if env.main:
        save_network(model, out_dir, arch, kwargs, train=train_cfg, step=steps, record=rec, **spec.facts)
        atomic_write_text(out_dir / "train_log.json", json.dumps(rec, indent=2))
        state_path.unlink(missing_ok=True)
    barrier(env)
    return rec


class _CheckedTrainContext(TrainContext):
    """A :class:`TrainContext` whose frozen networks must match the config they are loaded for."""

    def load(self, network: str):
        nets = self.config.get("networks") or {}
        if network in nets:
            check_trained_for(os.path.join(self.networks_dir, network), nets[network], network)
        return super().load(network)


def _finished_checkpoint(out_dir: Path, chash: str, steps: int) -> dict | None:
    """The training record of a finished checkpoint in ``out_dir`` trained with ``chash``, else None."""
    try:
        meta = read_meta(out_dir)
    except DpirError:
        return None
    rec = meta.get("record")
    if trained_hash(meta) != chash or meta.get("step") != steps or not (out_dir / "model.safetensors").exists():
        return None
    return {**rec, "reused": True}


def _say_why_retraining(out_dir: Path, network: str, chash: str) -> None:
    if not (out_dir / META_FILE).exists():
        return
    try:
        found = trained_hash(read_meta(out_dir))
    except DpirError as e:
        log.info("retraining %s: its checkpoint is unreadable (%s)", network, e)
        return
    if found != chash:
        log.info("retraining %s: %s was trained with training config hash %s, the config now gives %s; "
                 "the old checkpoint is replaced when training ends", network, out_dir / META_FILE, found, chash)


def _delete_stale_temporaries(out_dir: Path) -> None:
    """Half-written files of killed training runs (only the lock holder writes them)."""
    for f in out_dir.glob(".*tmp*"):
        if f.is_file():
            f.unlink(missing_ok=True)


def train_network(config: dict, network: str, *, progress: bool = True, stop_after: int | None = None) -> dict:
    """Train the network ``network`` of the config (the body of ``dpir train``).

    Holds the network's lock for the whole run; a run that had to wait for another ``dpir train`` of
    the same network and finds the checkpoint it finished (same training config) returns that
    checkpoint's record (with ``reused: True``) without training again.

    Under torchrun (:mod:`dpir.train.launch`) every process calls this; rank 0 holds the lock and
    decides (reuse or train), the others follow its decision."""
    from dpir import paths
    from dpir.config import resolve_device
    from dpir.train.launch import init

    net_cfg = network_config(config, network)
    if "train" not in net_cfg:
        raise DpirError(f"network {network!r} has no `train` section in the config (it is loaded from "
                        f"an official checkpoint, not trained)")
    train_cfg = net_cfg["train"]
    chash = training_hash(net_cfg) or train_hash(train_cfg, net_cfg["arch"], net_cfg["kwargs"],
                                                 int(train_cfg.get("seed", 0)))
    out_dir = paths.network_dir(config, network)
    env, device = init(resolve_device(config))
    if not env.main:
        done = broadcast_object(None, env)
        if done is not None:
            return done
        return _train_locked(config, network, net_cfg, out_dir, progress=progress, stop_after=stop_after,
                             env=env, device=device)
    before = file_stamp(out_dir / META_FILE)
    with exclusive_lock(out_dir, f"`dpir train --network {network}`") as waited:
        if waited and file_stamp(out_dir / META_FILE) != before:
            done = _finished_checkpoint(out_dir, chash, int(train_cfg["steps"]))
            if done is not None:
                log.info("%s was trained by another process while this one waited: reusing %s", network, out_dir)
                return broadcast_object(done, env)
        if out_dir.exists():
            _say_why_retraining(out_dir, network, chash)
            _delete_stale_temporaries(out_dir)
        broadcast_object(None, env)
        return _train_locked(config, network, net_cfg, out_dir, progress=progress, stop_after=stop_after,
                             env=env, device=device)


def _train_locked(config: dict, network: str, net_cfg: dict, out_dir: Path, *, progress: bool,
                  stop_after: int | None, env: DistEnv, device: torch.device) -> dict:
    # one torch thread per job by default config: Snakemake runs jobs side by side, and oversubscribed
    # OpenMP threads made parallel training jobs several times slower
    torch.set_num_threads(int(config.get("threads", torch.get_num_threads())))
    train_cfg = net_cfg["train"]
    from dpir.workflow_facts import task_of_network, train_dataset

    task_name = task_of_network(config, network)   # the same facts the workflow's rule train uses
    task = config["tasks"][task_name]
    dataset = train_dataset(config, network)
    seed = int(train_cfg.get("seed", 0))
    if train_cfg.get("cache_ir", False):   # before anything is loaded: the observation must be stored
        _check_cache_ir(config, network, task_name, dataset)
    torch.manual_seed(seed)  # initial weights
    ctx = _CheckedTrainContext(task_name=task_name, task=task, networks_dir=str(Path(config["out"]) / "networks"),
                               device=device, config=config)
    spec = get_trainer(train_cfg["trainer"])(net_cfg, ctx)
    from dpir.data.patches import CACHE_BYTES
    from dpir.data.store import open_store
    from dpir.tasks import train_degradation, train_margin

    if dataset not in config["datasets"]:
        raise UnknownNameError("dataset", dataset, config["datasets"])
    cache = train_cfg.get("cache_images")
    if cache not in (None, True, False):
        raise DpirError(f"train.cache_images must be true, false or null (automatic: memory-mapped), got {cache!r}")
    # rank 0 builds a missing small store (under the store's lock) before the others open it
    store = open_store(config, task_name, dataset, "train", build_below=CACHE_BYTES if env.main else None,
                       in_memory=bool(cache)) if env.main else None
    barrier(env)
    if store is None:
        store = open_store(config, task_name, dataset, "train", in_memory=bool(cache))
    degrade = train_degradation(task, config["datasets"][dataset])
    # bursts are synthesised from the whole sRGB crop: no stored observation to keep aligned with
    from dpir.tasks import task_kind

    scale = task_kind(task).train_crop_scale(task)
    ir_store = _ir_estimates(config, network, train_cfg, spec, store, env, device)
    data = TrainPatches(store, int(train_cfg.get("patch", 64)), seed=seed, scale=scale, degrade=degrade,
                        margin=train_margin(task), with_lq=spec.data != "clean", ir=ir_store)
    from dpir.provenance import provenance

    extra = {"cache_ir": ir_store.folder.name} if ir_store is not None else {}
    return fit(spec, data, train_cfg, out_dir, arch=net_cfg["arch"],
               kwargs=net_cfg["kwargs"], device=device, seed=seed, progress=progress, stop_after=stop_after,
               record={"network": network, "task": task_name, "dataset": dataset, "provenance": provenance(seed=seed),
                       **extra}, env=env)


def _check_cache_ir(config: dict, network: str, task_name: str, dataset: str) -> None:
    """``train.cache_ir: true`` needs training observations that are stored, not made per sample."""
    from dpir.tasks import train_degradation

    if train_degradation(config["tasks"][task_name], (config.get("datasets") or {}).get(dataset)) is not None:
        raise DpirError(f"networks.{network}.train.cache_ir: true needs stored training observations, but task "
                        f"{task_name!r} makes them on the fly from dataset {dataset!r} (a new random degradation per "
                        f"sample: no fixed image to estimate once); set it to false")


def _ir_estimates(config: dict, network: str, train_cfg: dict, spec: TrainSpec, store, env: DistEnv,
                  device: torch.device):
    """With ``train.cache_ir: true``: the stored estimates of the trainer's frozen IR network over the
    whole training observations (:func:`dpir.data.store.build_ir_store`, built by rank 0 under the
    store's lock when missing or made by other weights or data), else None.  The IR net is frozen and
    deterministic, so running it on every step's lq crops repeats work that can be done once."""
    if not train_cfg.get("cache_ir", False):
        return None
    key = f"networks.{network}.train.cache_ir"
    if spec.cache_ir is None:
        raise DpirError(f"{key}: true applies to fusion training only (a frozen IR network to cache); "
                        f"trainer {train_cfg['trainer']!r} has none: remove the key")
    from dpir.data.store import build_ir_store, open_ir_store, weights_key

    ir_name, ir = spec.cache_ir
    ir_key = weights_key(Path(config["out"]) / "networks" / ir_name)
    if env.main:
        build_ir_store(store, ir_name, ir_key, ir, device, tile=config.get("tile"),
                       overlap=int(config.get("tile_overlap", 16)))
    barrier(env)
    return open_ir_store(store, ir_name, ir_key)
