"""``dpir restore``: run one method with one seed over a prepared test set.

Writes ``<out>/restored/<task>/<dataset>/<method>/seed<k>/<id>.png`` and ``run.json`` (cost and
provenance).  Burst task: the observations are the RAW bursts under ``test/burst/`` and the method
gets each burst's metadata (``restore(y, generator, meta=[meta])``) to return sRGB.  Image ``i`` gets
the generator seeded by ``(seed, id)`` (:mod:`dpir.rng`), so the numbers do not depend on the batch,
the shard, the order or on an interruption.

Reliability (each point is tested):

- **One writer per run.**  A restore holds an exclusive lock (``.seed<k>.lock`` beside the run folder,
  :func:`dpir.atomic.exclusive_lock`) from its first output to its last; a duplicate (a job left
  running after Snakemake was killed, then a re-run) waits, then returns the run the first one
  finished when it matches its own settings.
- **Resume per image.**  Finished images go to ``seed<k>.partial/``: the PNG, then ``<id>.done.json``
  with its NFE, time and FLOPs (``resume.json`` holds the settings key).  An interrupted run (Ctrl-C,
  SIGTERM from a SLURM time limit, an error) keeps them, and the next run with the same settings
  (method and task config, seed, shard, networks, prepared data, device) restores only the rest; other
  settings discard them.  FLOPs are counted on the first image restored (stored with it).
- **Crash-safe replacement.**  The finished run is assembled in a folder unique to the process and
  swapped in (:func:`dpir.atomic.swap_in`); after a crash at any point the old or the new complete run
  exists, and the next restore (or score) puts the old one back (:func:`dpir.atomic.recover`).
- **Precision.**  A method entry's ``precision`` (fp32 default, bf16, fp16) runs its network calls under
  :func:`dpir.precision.autocast` and ``channels_last`` stores its networks and inputs NHWC; the output is
  float32 before it is clamped and written.  An unsupported setting (fp16 on the CPU) is one line naming
  the key before anything is written.  Both settings are in ``method_config`` (so in the run key); the
  default run's ``run.json`` is unchanged.
- **Checked networks.**  A network whose ``model.json`` was trained with another training config than
  the config's entry is refused (:func:`dpir.checkpoint.check_trained_for`).
- **Imported outputs.**  A method of kind ``outputs`` (images restored elsewhere) is not built: its folder
  is checked and imported by :func:`dpir.outputs.import_outputs`, written here like any run.  A method
  that names its network's ``architecture`` has it recorded as ``provenance.architecture``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import torch

from dpir import paths
from dpir.atomic import (atomic_write_text, exclusive_lock, file_stamp, is_complete, recover, swap_in,
                         unique_temp_dir)
from dpir.checkpoint import MODEL_FILE, check_trained_for, read_meta, trained_hash
from dpir.config import config_hash, method_config, resolve_device, task_config
from dpir.data.images import write_png
from dpir.data.prepare import read_manifest
from dpir.errors import DpirError
from dpir.measure import count_flops, count_nfe, count_params, peak_cuda_mib, peak_rss_mib
from dpir.methods import BuildContext, build_method
from dpir.precision import autocast, check_precision, setup_backends
from dpir.provenance import provenance
from dpir.results import IMAGE_SEED_RULE, RunRecord
from dpir.rng import make_generator
from dpir.tasks import task_kind
from dpir.workflow_facts import is_outputs

log = logging.getLogger(__name__)


class _CheckedContext(BuildContext):
    """A :class:`BuildContext` whose networks must have been trained with the config's entry."""

    def checkpoint(self, network: str) -> str:
        path = super().checkpoint(network)
        nets = self.config.get("networks") or {}
        if network in nets:
            check_trained_for(path, nets[network], network)
        self.__dict__.setdefault("used", {})[network] = path
        return path


def build(config: dict, task: str, method: str):
    tcfg = task_config(config, task)
    mcfg = method_config(config, task, method)
    device = resolve_device(config)
    if is_outputs(mcfg):
        raise DpirError(f"method {method!r} of task {task!r} is of kind 'outputs' (images restored elsewhere, "
                        f"imported by `dpir restore`): it has no model to build or measure")
    ctx = _CheckedContext(task_name=task, task=tcfg, networks_dir=str(Path(config["out"]) / "networks"),
                          device=device, config=config)
    ctx.method_name = method          # for the factories' one-line errors (tasks.<task>.methods.<name>.<key>)
    m = build_method(mcfg, ctx).to(device).eval()
    m.name = method
    m.checkpoints = dict(getattr(ctx, "used", {}))  # network name -> folder, for the resume key
    if config.get("tile"):
        from dpir.tiling import wrap_for_tiling

        wrap_for_tiling(m, config["tile"], config["tile_overlap"])
    return m, mcfg, tcfg, device


def _observations(root: Path, tcfg: dict, mcfg: dict, m, method: str, ids: list[str]):
    """A loader ``id -> (y, extra restore kwargs)`` for the prepared test split.

    The task kind loads them (:meth:`dpir.tasks.TaskKind.load_inputs`): images ``lq/<id>.png``; bursts
    ``burst/`` (SyntheticBurst layout) with ``meta=[metadata]``, so the method can take its linear
    estimate to sRGB, every listed burst checked (all frames present) before anything is written.  A
    method whose ``restore`` lacks a keyword the kind passes (bursts: ``meta``) is refused first."""
    kind = task_kind(tcfg)
    if kind.restore_kwargs:
        import inspect

        params = inspect.signature(m.restore).parameters
        lacking = [k for k in kind.restore_kwargs if k not in params]
        if lacking:
            raise DpirError(f"method {method!r} (kind {mcfg['kind']!r}) cannot restore bursts: its restore() takes "
                            f"no burst metadata ({', '.join(lacking)}) to convert its output to sRGB; use kind "
                            f"burst_bicubic, backbone or dpir")
    return kind.load_inputs(root, tcfg, ids)


DONE = ".done.json"          # <id>.done.json in the partial folder: that image is finished
RESUME = "resume.json"       # the settings key of the partial folder


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; anything else is a one-line error."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise DpirError(f"--shard expects K/N, shard K of N with whole numbers 0 <= K < N (e.g. --shard 0/4), "
                        f"got {text!r}")
    return check_shard((int(m.group(1)), int(m.group(2))), text)


def check_shard(shard, given=None) -> tuple[int, int]:
    try:
        k, n = shard
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (k, n)) and 0 <= k < n
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DpirError(f"--shard K/N needs whole numbers 0 <= K < N (shards are numbered 0 to N-1), "
                        f"got {given if given is not None else shard!r}")
    return k, n


def check_shard_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DpirError(f"--merge-shards N needs the number of shards N >= 1 (the N of --shard K/N), got {n!r}")
    return n


def shard_dir(out_dir: Path, k: int, n: int) -> Path:
    return out_dir.with_name(f"{out_dir.name}.shard{k}of{n}")


def partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f"{out_dir.name}.partial")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _network_stamps(m) -> dict:
    """What identifies the networks a method loaded: their training hash and file version."""
    out = {}
    for name, folder in sorted(getattr(m, "checkpoints", {}).items()):
        try:
            meta = read_meta(folder)
        except DpirError:
            meta = {}
        stamp = file_stamp(Path(folder) / MODEL_FILE)
        out[name] = [trained_hash(meta) or meta.get("official_sha256"), list(stamp[1:]) if stamp else None]
    return out


def _run_key(config, tcfg, mcfg, man, m, device, seed, shard) -> str:
    """Everything the pixels of a run depend on: images restored under another key are not reused."""
    key = {
        "method_config_hash": config_hash(mcfg), "task_config_hash": config_hash(tcfg), "seed": seed,
        "shard": list(shard) if shard else None, "png_bits": int(config.get("png_bits", 8)),
        "tile": config.get("tile"), "tile_overlap": config.get("tile_overlap") if config.get("tile") else None,
        "device": device.type, "networks": _network_stamps(m), "manifest": config_hash(man)}
    code = getattr(m, "code_source", None)
    if code:            # a user's model (kind python): its source file's hash (the other kinds' keys stay as they were)
        key["code"] = code
    ckpt = getattr(m, "checkpoint_path", None)
    if ckpt:            # a checkpoint file read directly (kind checkpoint): a changed file is another run
        stamp = file_stamp(Path(ckpt))
        key["checkpoint"] = [ckpt, list(stamp[1:]) if stamp else None]
    return config_hash(key)


def _open_partial(partial: Path, key: str, ids: list[str]) -> dict[str, dict]:
    """The finished images (id -> per-image record) of ``partial`` when it was written under ``key``;
    a folder of other settings is deleted.  Call with the run's lock held."""
    if partial.exists():
        try:
            stored = json.loads((partial / RESUME).read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            stored = None
        if stored != key:
            n = len(list(partial.glob("*" + DONE)))
            if n:
                log.info("discarding %d finished images in %s: they were restored with other settings", n, partial)
            shutil.rmtree(partial)
    if not partial.exists():
        partial.mkdir(parents=True)
        atomic_write_text(partial / RESUME, json.dumps({"key": key}))
        return {}
    for f in partial.glob(".*"):            # half-written files of a killed run
        if f.is_file():
            f.unlink(missing_ok=True)
    done = {}
    for image_id in ids:
        f = partial / f"{image_id}{DONE}"
        if f.is_file() and (partial / f"{image_id}.png").is_file():
            try:
                done[image_id] = json.loads(f.read_text())
            except ValueError:
                f.unlink(missing_ok=True)
    return done


def _finished_run(out_dir: Path, key: str, ids: list[str]) -> dict | None:
    """The record of a complete run in ``out_dir`` restored under ``key``, else None."""
    try:
        rec = RunRecord.read(out_dir / "run.json").to_dict()
    except DpirError:
        return None
    if rec.get("run_key") != key or rec.get("images") != ids:
        return None
    if not all((out_dir / f"{i}.png").is_file() for i in ids):
        return None
    return rec


def method_precision(mcfg: dict, task: str, method: str, device) -> tuple[str, bool]:
    """``(precision, channels_last)`` of a method's entry (defaults fp32, false), checked for ``device``:
    an unsupported setting (fp16 on the CPU) is one line naming the config key, before anything runs."""
    precision = check_precision(mcfg.get("precision", "fp32"), device, key=f"tasks.{task}.methods.{method}.precision")
    return precision, bool(mcfg.get("channels_last", False))


def _restore_one(m, y, g, extra, device, with_flops: bool, precision: str = "fp32") -> tuple[torch.Tensor, dict]:
    """One image restored under the method's precision (autocast for bf16/fp16; fp32 runs exactly as
    without it), the output back in float32 before it is clamped and written."""
    flops = flops_size = None
    with torch.no_grad(), count_nfe(m) as counter, autocast(precision, device):
        if with_flops:  # FLOPs of the first image, counted during its real restoration
            with count_flops(mod for mods in m.nfe_groups().values() for mod in mods) as fc:
                t0 = time.perf_counter()
                x = m.restore(y, g, **extra)
                dt = time.perf_counter() - t0
            flops = int(fc.get_total_flops()) if m.flops_counted else None
            flops_size = list(y.shape[-2:])
        else:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            x = m.restore(y, g, **extra)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
    x = x.float().contiguous()        # bf16/fp16 or channels_last outputs: float32, NCHW
    return x, {"nfe": counter.total, "nfe_groups": counter.by_group(), "seconds": dt,
               "under_flop_counter": with_flops, "flops": flops, "flops_input_size": flops_size}


def _cost(method: str, ids: list[str], done: dict[str, dict]) -> dict:
    """NFE, FLOPs and timing of a run from its per-image records."""
    infos = [done[i] for i in ids]
    if not infos:
        return {"nfe": None, "nfe_groups": None, "flops_per_image": None, "flops_input_size": None,
                "seconds_per_image": None, "seconds": [], "timing_note": "no images (an empty shard)"}
    groups = infos[0]["nfe_groups"]
    for image_id, inf in zip(ids, infos):
        if inf["nfe_groups"] != groups:
            raise RuntimeError(f"{method}: NFE differs between images ({groups} vs {inf['nfe_groups']} for {image_id})")
    counted = [(i, inf) for i, inf in zip(ids, infos) if inf["under_flop_counter"]]
    seconds = [inf["seconds"] for inf in infos if not inf["under_flop_counter"]]
    if not seconds:
        seconds, note = [inf["seconds"] for _, inf in counted], "single image, timed under the FLOP counter (slower)"
    elif counted and counted[0][0] == ids[0]:
        note = "mean over images 2..n (image 1 runs under the FLOP counter)"
    else:
        note = (f"mean over the images not timed under the FLOP counter (image {counted[0][0]})" if counted
                else "mean over all images")
    first = counted[0][1] if counted else {}
    return {"nfe": infos[0]["nfe"], "nfe_groups": groups, "flops_per_image": first.get("flops"),
            "flops_input_size": first.get("flops_input_size"), "seconds_per_image": sum(seconds) / len(seconds),
            "seconds": seconds, "timing_note": note}


def restore_dataset(config: dict, task: str, dataset: str, method: str, seed: int, *, progress: bool = True,
                    shard: tuple[int, int] | None = None) -> dict:
    from tqdm import tqdm

    if shard is not None:
        shard = check_shard(shard)
    if is_outputs(method_config(config, task, method)):
        if shard is not None:
            raise DpirError(f"method {method!r} is of kind 'outputs': its folder is imported in one go, so --shard "
                            f"does not apply; run `dpir restore` without --shard")
        from dpir.outputs import import_outputs

        return import_outputs(config, task, dataset, method, seed)
    torch.set_num_threads(int(config.get("threads", torch.get_num_threads())))
    precision, channels_last = method_precision(method_config(config, task, method), task, method,
                                                resolve_device(config))
    m, mcfg, tcfg, device = build(config, task, method)
    setup_backends(device)            # TF32 on CUDA; a no-op on the CPU
    if channels_last:                 # the method's networks' 4-D weights NHWC (its inputs follow, per image)
        for module in m.modules().values():
            module.to(memory_format=torch.channels_last)
    man = read_manifest(config, task, dataset)
    ids = man["splits"]["test"]["ids"]
    limit = mcfg.get("max_images")
    if limit:
        ids = ids[:limit]
    if not ids:
        raise DpirError(f"{paths.manifest(config, task, dataset)} lists no test images: nothing to restore; check "
                        f"`datasets.{dataset}` in the config and run `dpir prepare --task {task} --dataset {dataset}`")
    if shard is not None:
        k, n = shard
        ids = ids[k::n]             # may be empty (more shards than images): an empty, valid shard
    root = paths.prepared(config, task, dataset) / "test"
    load = _observations(root, tcfg, mcfg, m, method, ids)    # checks every burst file before any output
    out_dir = paths.restored_dir(config, task, dataset, method, seed)
    if shard is not None:
        out_dir = shard_dir(out_dir, *shard)
    key = _run_key(config, tcfg, mcfg, man, m, device, seed, shard)
    bits = int(config.get("png_bits", 8))
    before = file_stamp(out_dir / "run.json")
    with exclusive_lock(out_dir, f"the restore of {out_dir}") as waited:
        if waited and file_stamp(out_dir / "run.json") != before:
            rec = _finished_run(out_dir, key, ids)
            if rec is not None:
                log.info("%s was restored by another process while this one waited: keeping its result", out_dir)
                return rec
        recover(out_dir)
        partial = partial_dir(out_dir)
        done = _open_partial(partial, key, ids)
        todo = [i for i in ids if i not in done]
        if done:
            log.info("resuming %s: %d of %d images are already restored in %s", out_dir.name, len(done), len(ids),
                     partial)
        flops_on = None if any(d.get("under_flop_counter") for d in done.values()) else (todo[0] if todo else None)
        groups = next(iter(done.values()))["nfe_groups"] if done else None
        try:
            for image_id in tqdm(todo, desc=f"{method}/seed{seed}", disable=not progress, mininterval=2.0):
                y, extra = load(image_id)
                y = y[None].to(device)
                if channels_last and y.dim() == 4:
                    y = y.contiguous(memory_format=torch.channels_last)
                x, info = _restore_one(m, y, [make_generator(seed, image_id)], extra, device, image_id == flops_on,
                                       precision)
                if groups is None:
                    groups = info["nfe_groups"]
                elif info["nfe_groups"] != groups:
                    raise RuntimeError(f"{method}: NFE differs between images ({groups} vs {info['nfe_groups']})")
                write_png(partial / f"{image_id}.png", x[0], bits=bits)
                atomic_write_text(partial / f"{image_id}{DONE}", json.dumps(info))
                done[image_id] = info
        except BaseException:
            if done:
                log.warning("%d of %d images of %s are kept in %s; the next `dpir restore` with the same settings "
                            "resumes from them", len(done), len(ids), out_dir.name, partial)
            else:
                shutil.rmtree(partial, ignore_errors=True)
            raise
        record = RunRecord(
            schema=1, task=task, dataset=dataset, method=method, seed=seed,
            kind=mcfg["kind"], label=mcfg.get("label", method), method_config=mcfg,
            method_config_hash=config_hash(mcfg), task_config_hash=config_hash(tcfg),
            stochastic=bool(m.stochastic), images=ids, n_images=len(ids), image_seed_rule=IMAGE_SEED_RULE,
            **_cost(method, ids, done), nfe_note=m.nfe_note,
            params_total=count_params(m.modules()), params_trained=count_params(m.trained_modules()),
            peak_rss_mib=round(peak_rss_mib(), 1), peak_cuda_mib=peak_cuda_mib(device),
            png_bits=bits, shard=list(shard) if shard else None,
            tiled_modules=getattr(m, "tiled_modules", None), tile=config.get("tile"),
            run_key=key, resumed_images=len(ids) - len(todo),
            provenance=_provenance(m, device, seed),
        )
        _publish(out_dir, record, [(partial / f"{i}.png", f"{i}.png") for i in ids])
        shutil.rmtree(partial, ignore_errors=True)
    return record.to_dict()


def _provenance(m, device, seed: int) -> dict:
    """The run's provenance; ``architecture`` added when the method names its network's architecture (a
    checkpoint's, detected by spandrel), ``code`` when it is a user's model (kind python: entry, file,
    sha256); both inside ``provenance``, so that run.json keeps its keys."""
    prov = provenance(device, seed=seed, torch_threads=torch.get_num_threads())
    arch = getattr(m, "architecture", None)
    if isinstance(arch, str) and arch:
        prov["architecture"] = arch
    code = getattr(m, "code_source", None)
    if code:           # kind python: the user's entry, module file and its sha256
        prov["code"] = code
    return prov


def _publish(out_dir: Path, record: RunRecord, files: list[tuple[Path, str]]) -> None:
    """Assemble ``files`` and ``run.json`` in a folder unique to this process, then swap it in."""
    tmp = unique_temp_dir(out_dir)
    try:
        for src, name in files:
            _link_or_copy(src, tmp / name)
        atomic_write_text(tmp / "run.json", record.to_json())
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # gone once swapped in; a failed assembly leaves nothing


def merge_shards(config: dict, task: str, dataset: str, method: str, seed: int, n: int) -> dict:
    """Join ``n`` shard folders into the normal output folder (sharding never changes the numbers:
    every image's noise depends only on (seed, id)).  The shards are deleted once the merged run is in
    place; a merge that finds the merged run already there and its shards consumed returns it."""
    n = check_shard_count(n)
    if is_outputs(method_config(config, task, method)):
        raise DpirError(f"method {method!r} is of kind 'outputs' and is never sharded: import it with `dpir restore "
                        f"--task {task} --dataset {dataset} --method {method}` (no --merge-shards)")
    out_dir = paths.restored_dir(config, task, dataset, method, seed)
    mhash = config_hash(method_config(config, task, method))
    thash = config_hash(task_config(config, task))
    shards = [shard_dir(out_dir, k, n) for k in range(n)]
    with exclusive_lock(out_dir, f"the merge of {out_dir}"), contextlib.ExitStack() as stack:
        recover(out_dir)
        for s in shards:
            stack.enter_context(exclusive_lock(s, f"the restore of {s}"))
            recover(s)
        if not all(is_complete(s) for s in shards) and is_complete(out_dir):
            try:
                rec = RunRecord.read(out_dir / "run.json").to_dict()
            except DpirError:
                rec = {}
            if rec.get("merged_from") == n and rec.get("method_config_hash") == mhash:
                log.info("%s is already merged from %d shards", out_dir, n)
                for s in shards:
                    shutil.rmtree(s, ignore_errors=True)
                return rec
        recs = []
        for k, s in enumerate(shards):
            fix = f"run `dpir restore --task {task} --dataset {dataset} --method {method} --seed {seed} --shard {k}/{n}`"
            if not is_complete(s):
                raise DpirError(f"shard {s} is missing or incomplete; {fix} first")
            r = RunRecord.read(s / "run.json", fix=f"{fix} again")
            if r.shard != [k, n]:
                raise DpirError(f"{s / 'run.json'} is not the run record of shard {k}/{n}; {fix} again")
            if r.method_config_hash != mhash or r.task_config_hash != thash:
                raise DpirError(f"shard {s} was restored with other settings (method config hash "
                                f"{r.method_config_hash}, the config now gives {mhash}); {fix} again")
            lost = [i for i in r.images if not (s / f"{i}.png").is_file()]
            if lost:
                raise DpirError(f"{s / (lost[0] + '.png')} (listed in its run.json) is missing; {fix} again")
            recs.append(r)
        order = read_manifest(config, task, dataset)["splits"]["test"]["ids"]
        have = {i for r in recs for i in r.images}
        ids = [i for i in order if i in have]
        base = next((r for r in recs if r.images), recs[0])    # shard 0 holds image 1 (FLOPs, timing note)
        seconds = [t for r in recs for t in r.seconds]
        rec = dataclasses.replace(base, images=ids, n_images=len(ids), shard=None, merged_from=n, seconds=seconds,
                                  run_key=None, seconds_per_image=sum(seconds) / len(seconds) if seconds else None,
                                  resumed_images=sum(r.resumed_images for r in recs))
        _publish(out_dir, rec, [(s / f"{i}.png", f"{i}.png") for s, r in zip(shards, recs) for i in r.images])
        for s in shards:
            shutil.rmtree(s)
    return rec.to_dict()
