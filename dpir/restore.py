"""``dpir restore``: run one method with one seed over a prepared test set.

Writes ``<out>/restored/<task>/<dataset>/<method>/seed<k>/<id>.png`` and ``run.json`` (cost and
provenance).  Burst task: the observations are the RAW bursts under ``test/burst/`` and the method
gets each burst's metadata (``restore(y, generator, meta=[meta])``) to return sRGB.  Image ``i`` gets
the generator seeded by ``(seed, id)`` (:mod:`dpir.rng`), so the numbers do not depend on the batch, the shard or the order.  Output goes to a temporary folder
that replaces the old one only when every image is done: an interrupted run never destroys a
finished one.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch

from dpir import paths
from dpir.checkpoint import atomic_write_text
from dpir.config import config_hash, method_config, resolve_device, task_config
from dpir.data.images import read_image, write_png
from dpir.data.prepare import read_manifest
from dpir.errors import DpirError
from dpir.measure import count_flops, count_nfe, count_params, peak_cuda_mib, peak_rss_mib
from dpir.methods import BuildContext, build_method
from dpir.provenance import provenance
from dpir.rng import make_generator

log = logging.getLogger(__name__)


def build(config: dict, task: str, method: str):
    tcfg = task_config(config, task)
    mcfg = method_config(config, task, method)
    device = resolve_device(config)
    ctx = BuildContext(task_name=task, task=tcfg, networks_dir=str(Path(config["out"]) / "networks"),
                       device=device, config=config)
    m = build_method(mcfg, ctx).to(device).eval()
    m.name = method
    if config.get("tile"):
        from dpir.tiling import wrap_for_tiling

        wrap_for_tiling(m, config["tile"], config["tile_overlap"])
    return m, mcfg, tcfg, device


def _observations(root: Path, tcfg: dict, mcfg: dict, m, method: str, ids: list[str]):
    """A loader ``id -> (y, extra restore kwargs)`` for the prepared test split.

    Images: ``lq/<id>.png``.  Bursts: ``burst/`` (SyntheticBurst layout) with ``meta=[metadata]``, so the
    method can take its linear estimate to sRGB; every listed burst is checked (all frames present)
    before anything is written, and a method whose ``restore`` takes no metadata is refused."""
    if tcfg["kind"] != "burst":
        return lambda image_id: (read_image(root / "lq" / f"{image_id}.png"), {})
    import inspect

    from dpir.data.burst import list_bursts, read_burst
    from dpir.tasks import burst_settings

    if "meta" not in inspect.signature(m.restore).parameters:
        raise DpirError(f"method {method!r} (kind {mcfg['kind']!r}) cannot restore bursts: its restore() takes no "
                        f"burst metadata (meta) to convert its output to sRGB; use kind burst_bicubic, backbone or dpir")
    samples = {b.id: b for b in list_bursts(root / "burst", burst_settings(tcfg)[0])}
    missing = [i for i in ids if i not in samples]
    if missing:
        raise DpirError(f"bursts {missing} of the manifest are missing under {root / 'burst' / 'bursts'}; "
                        f"re-run `dpir prepare`")

    def load(image_id: str):
        frames, _, meta = read_burst(samples[image_id])
        return frames, {"meta": [meta]}

    return load


def restore_dataset(config: dict, task: str, dataset: str, method: str, seed: int, *, progress: bool = True,
                    shard: tuple[int, int] | None = None) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(int(config.get("threads", torch.get_num_threads())))
    m, mcfg, tcfg, device = build(config, task, method)
    man = read_manifest(config, task, dataset)
    ids = man["splits"]["test"]["ids"]
    limit = mcfg.get("max_images")
    if limit:
        ids = ids[:limit]
    if shard is not None:
        k, n = shard
        ids = ids[k::n]
    root = paths.prepared(config, task, dataset) / "test"
    load = _observations(root, tcfg, mcfg, m, method, ids)    # checks every burst file before any output
    out_dir = paths.restored_dir(config, task, dataset, method, seed)
    if shard is not None:
        out_dir = out_dir.with_name(f"{out_dir.name}.shard{shard[0]}of{shard[1]}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seconds, nfe, nfe_groups, flops, flops_size = [], None, None, None, None
    try:
        for n, image_id in enumerate(tqdm(ids, desc=f"{method}/seed{seed}", disable=not progress, mininterval=2.0)):
            y, extra = load(image_id)
            y = y[None].to(device)
            g = [make_generator(seed, image_id)]
            with torch.no_grad(), count_nfe(m) as counter:
                if n == 0:  # FLOPs of the first image, counted during its real restoration
                    with count_flops() as fc:
                        t0 = time.perf_counter()
                        x = m.restore(y, g, **extra)
                        first_time = time.perf_counter() - t0
                    flops = int(fc.get_total_flops()) if m.flops_counted else None
                    flops_size = list(y.shape[-2:])
                else:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    x = m.restore(y, g, **extra)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    seconds.append(time.perf_counter() - t0)
            groups = counter.by_group()
            if nfe_groups is None:
                nfe_groups, nfe = groups, counter.total
            elif groups != nfe_groups:
                raise RuntimeError(f"{method}: NFE differs between images ({nfe_groups} vs {groups})")
            write_png(tmp / f"{image_id}.png", x[0], bits=int(config.get("png_bits", 8)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written run behind
        raise
    timing_note = "mean over images 2..n (image 1 runs under the FLOP counter)"
    if not seconds:
        seconds, timing_note = [first_time], "single image, timed under the FLOP counter (slower)"
    record = {
        "schema": 1, "task": task, "dataset": dataset, "method": method, "seed": seed,
        "kind": mcfg["kind"], "label": mcfg.get("label", method), "method_config": mcfg,
        "method_config_hash": config_hash(mcfg), "task_config_hash": config_hash(tcfg),
        "stochastic": bool(m.stochastic), "images": ids, "n_images": len(ids),
        "image_seed_rule": "sha256(f'{seed}:{image_id}')[:8] (dpir.rng.image_seed)",
        "nfe": nfe, "nfe_groups": nfe_groups, "nfe_note": m.nfe_note,
        "params_total": count_params(m.modules()), "params_trained": count_params(m.trained_modules()),
        "flops_per_image": flops, "flops_input_size": flops_size,
        "seconds_per_image": sum(seconds) / len(seconds), "seconds": seconds, "timing_note": timing_note,
        "peak_rss_mib": round(peak_rss_mib(), 1), "peak_cuda_mib": peak_cuda_mib(device),
        "png_bits": int(config.get("png_bits", 8)), "shard": shard,
        "tiled_modules": getattr(m, "tiled_modules", None), "tile": config.get("tile"),
        "provenance": provenance(device, seed=seed, torch_threads=torch.get_num_threads()),
    }
    atomic_write_text(tmp / "run.json", json.dumps(record, indent=2))
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return record


def merge_shards(config: dict, task: str, dataset: str, method: str, seed: int, n: int) -> dict:
    """Join ``n`` shard folders into the normal output folder (sharding never changes the numbers:
    every image's noise depends only on (seed, id))."""
    out_dir = paths.restored_dir(config, task, dataset, method, seed)
    shards = [out_dir.with_name(f"{out_dir.name}.shard{k}of{n}") for k in range(n)]
    for s in shards:
        if not (s / "run.json").exists():
            raise DpirError(f"shard {s} is missing or incomplete; run `dpir restore ... --shard {s.name[-4:]}` again")
    recs = [json.loads((s / "run.json").read_text()) for s in shards]
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    order = read_manifest(config, task, dataset)["splits"]["test"]["ids"]
    ids = [i for i in order if any(i in r["images"] for r in recs)]
    for s in shards:
        for f in s.glob("*.png"):
            shutil.copy2(f, tmp / f.name)
    rec = dict(recs[0])
    rec.update(images=ids, n_images=len(ids), shard=None, merged_from=n,
               seconds=[t for r in recs for t in r["seconds"]])
    rec["seconds_per_image"] = sum(rec["seconds"]) / len(rec["seconds"])
    atomic_write_text(tmp / "run.json", json.dumps(rec, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    for s in shards:
        shutil.rmtree(s)
    return rec
