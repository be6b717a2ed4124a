"""TFLOPs per output image at a fixed size (the paper's Table 9: per-step cost x NFE + once-per-image).

A measurement (it builds and runs methods), so it sits beside :mod:`dpir.measure`, not in
:mod:`dpir.report`, which only renders results files (``tests/test_import_rules.py``).

Every method of the task is built on the META device (its architectures, no weights) and restores one
input whose output has the requested size.  Each NFE group's modules are hooked with their own
FlopCounterMode, and the restoration stops as soon as every group has been called once: the per-call
cost of each group is counted at full size (no scaling from smaller inputs) and a 1001-step chain is
never run.  The number of calls per group comes from a complete restore of a small input
(forward-call counting).  FLOPs are 2 x MACs of conv/matmul; FFTs and elementwise ops are not counted.
A row of kind ``outputs`` (restored outside the harness) is not measurable: its row carries the NFE and
TFLOPs its config declares, marked "(declared)", or n/a.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from dpir.checkpoint import atomic_write_text
from dpir.tasks import task_kind
from dpir.workflow_facts import is_outputs, is_published, networks_of


class _Stop(Exception):
    pass


def per_call_flops(method, y, meta=None) -> dict[str, int]:
    """FLOPs of one call of each NFE group: the sum over the group's modules of each module's first
    call (DP-IR's step = one denoiser call + one fusion call).  The restoration is aborted as soon as
    every module has been called once."""
    from torch.utils.flop_counter import FlopCounterMode

    groups = method.nfe_groups()
    first: dict[int, int] = {}
    wanted = {id(m) for mods in groups.values() for m in mods}
    handles = []
    for mods in groups.values():
        for m in mods:
            state: dict = {}

            def pre(module, args, state=state):
                if id(module) not in first and "mode" not in state:
                    state["mode"] = FlopCounterMode(display=False)
                    state["mode"].__enter__()

            def post(module, args, out, state=state):
                if "mode" in state:
                    mode = state.pop("mode")
                    mode.__exit__(None, None, None)
                    first[id(module)] = mode.get_total_flops()
                if set(first) >= wanted:
                    raise _Stop
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            method.restore(y, [torch.Generator().manual_seed(0)])
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return {g: sum(first.get(id(m), 0) for m in mods) for g, mods in groups.items()}


def full_size_per_call_flops(config: dict, task: str, name: str, h: int, w: int) -> dict[str, int]:
    """:func:`per_call_flops` of the method at an ``h x w`` input, with its networks on the META device
    (:func:`dpir.plan.build_meta_method`: the same architectures, no weights; FlopCounterMode counts by
    shape, so the count is the real forward's, ``tests/test_plan.py``).  A paper-size network at 1280x720
    is then counted in seconds on any machine instead of minutes of CPU forwards."""
    from dpir.plan import _meta_noise, build_meta_method

    meta = build_meta_method(config, task, name)
    with _meta_noise():
        return per_call_flops(meta, torch.empty(1, 3, h, w, device="meta"))


def tflops_table(config: dict, task: str, width: int = 1280, height: int = 720, methods=None) -> list[dict]:
    from dpir.restore import build

    tcfg = config["tasks"][task]
    scale = int(tcfg.get("scale", 1))
    torch.set_num_threads(int(config.get("threads", 1)))
    rows = []
    cache: dict[tuple, dict[str, int]] = {}  # methods built from the same networks share per-call costs
    for name in methods or list(tcfg["methods"]):
        if is_published(tcfg["methods"][name]):   # copied scores: nothing to measure
            continue
        if is_outputs(tcfg["methods"][name]):     # restored elsewhere: only what its config declares
            rows.append(_declared_row(name, tcfg["methods"][name]))
            continue
        m, mcfg, _, device = build(config, task, name)
        if not m.nfe_groups() or not task_kind(tcfg).image_input:    # no 1280x720 RGB input for bursts
            continue
        calls = _call_counts(config, task, name, m, device)
        key = (tcfg["methods"][name]["kind"], *networks_of(tcfg["methods"][name]))
        if key not in cache:
            cache[key] = full_size_per_call_flops(config, task, name, height // scale, width // scale)
        per = cache[key]
        steps = max([calls[g] for g in calls if calls[g] > 1], default=0)
        per_step = sum(per[g] for g in calls if calls[g] > 1)
        once = sum(per[g] * calls[g] for g in calls if calls[g] <= 1)
        total = sum(per[g] * calls[g] for g in calls)
        rows.append({"method": name, "label": mcfg.get("label", name), "nfe": sum(calls.values()), "calls": calls,
                     "per_call_tflops": {g: v / 1e12 for g, v in per.items()}, "per_step_tflops": per_step / 1e12,
                     "steps": steps, "once_tflops": once / 1e12, "total_tflops": total / 1e12})
    return rows


def _call_counts(config: dict, task: str, name: str, m, device) -> dict[str, int]:
    """Calls of each NFE group in one restoration (:meth:`NFECounter.by_group`), counted on a META copy of
    the method (:func:`dpir.plan.build_meta_method`; a repeated call of one shape is replayed, not run), so
    a 1001-step chain is counted in seconds; the real method on a 16x16 input when the META copy cannot
    run (a user's model).  The counts are the same (tests/test_train_restore.py): the samplers' step counts
    do not depend on pixel values.  Counting on the real networks took 233 of the 303 s of the default
    config's SR job (1552 denoiser + fusion calls at 64x64)."""
    from dpir.measure import count_nfe

    try:
        return meta_call_counts(config, task, name)
    except Exception:                      # noqa: BLE001 - a model META cannot run: count on the real one
        small = torch.rand(1, 3, 16, 16, device=device)
        with torch.no_grad(), count_nfe(m) as c:
            m.restore(small, [torch.Generator().manual_seed(0)])
        return c.by_group()


def meta_call_counts(config: dict, task: str, name: str) -> dict[str, int]:
    """Calls of each NFE group of method ``name`` restoring a 16x16 input on META (see :func:`_call_counts`)."""
    from dpir.measure import count_nfe
    from dpir.plan import _memo_forwards, _meta_noise, build_meta_method, flop_counter

    meta = build_meta_method(config, task, name)
    mods = [mod for group in meta.nfe_groups().values() for mod in group]
    counter = flop_counter()
    with torch.no_grad(), _meta_noise(), count_nfe(meta) as c, counter, _memo_forwards(mods, counter):
        meta.restore(torch.empty(1, 3, 16, 16, device="meta"), [torch.Generator().manual_seed(0)])
    return c.by_group()


def _declared_row(name: str, mcfg: dict) -> dict:
    """A row of kind ``outputs``: nothing to build or count; its declared NFE and TFLOPs (None: n/a)."""
    return {"method": name, "label": mcfg.get("label", name), "declared": True, "nfe": mcfg.get("nfe"),
            "calls": None, "per_call_tflops": None, "per_step_tflops": None, "steps": None, "once_tflops": None,
            "total_tflops": mcfg.get("tflops")}


def write_tflops(config: dict, task: str, out_dir: str | Path, width: int = 1280, height: int = 720) -> Path:
    rows = tflops_table(config, task, width, height)
    lines = ["| Method | NFE | TFLOPs = per-step x steps + once-per-image | TFLOPs/img |", "|---|---|---|---|"]
    for r in rows:
        if r.get("declared"):
            nfe = f"{r['nfe']} (declared)" if r["nfe"] is not None else "n/a"
            total = f"{r['total_tflops']:.4g} (declared)" if r["total_tflops"] is not None else "n/a"
            lines.append(f"| {r['label']} | {nfe} | not measured (restored outside the harness) | {total} |")
            continue
        formula = (f"{r['per_step_tflops']:.3g} x {r['steps']} + {r['once_tflops']:.3g}" if r["steps"]
                   else f"{r['once_tflops']:.3g}")
        lines.append(f"| {r['label']} | {r['nfe']} | {formula} | {r['total_tflops']:.4g} |")
    out = Path(out_dir) / f"{task}_tflops_{width}x{height}.json"
    atomic_write_text(out, json.dumps({"task": task, "width": width, "height": height, "rows": rows,
                                       "markdown": "\n".join(lines)}, indent=2))
    return out


# ------------------------------------------------------------------------------------------------
# Table 9 at the paper's sizes, counted on the META device (no weights, no data)

#: the tasks of the paper's Table 9 form that take a 1280x720 RGB image (bursts have no such input)
PAPER_TABLE9_TASKS = ("deblur", "sr")
PAPER_TABLE9_FORMAT = "dpir-paper-table9/1"


def paper_table9(config: dict, tasks=PAPER_TABLE9_TASKS, width: int = 1280, height: int = 720) -> dict:
    """TFLOPs per ``width x height`` output image of every counted method of ``tasks``, at the config's
    own architectures (``config/paper.yaml``: the paper's sizes), with :func:`dpir.plan.restore_image`
    on the META device: a whole restore (every network call; repeated calls of one shape replayed, so a
    1001-step chain costs seconds), so any machine can check the paper's cost claim at its own scale.
    Published rows (copied scores) and methods without a network (bicubic, the observation) are left
    out: there is nothing to count."""
    import time

    from dpir.plan import _restore_image_or_note

    t0 = time.perf_counter()
    rows, skipped = [], []
    for task in tasks:
        tcfg = config["tasks"].get(task)
        if tcfg is None or not task_kind(tcfg).image_input:
            continue
        for name, mcfg in tcfg["methods"].items():
            if is_published(mcfg) or is_outputs(mcfg):   # copied scores, imported outputs: nothing to count
                continue
            r = _restore_image_or_note(config, task, name, height, width)   # never downloads
            if r.get("not_planned"):          # a checkpoint not on this machine, a user's model that fails
                skipped.append({"task": task, "method": name, "label": mcfg.get("label", name),
                                "why": r["not_planned"]})
                continue
            if not r["nfe"]:
                continue
            rows.append({"task": task, "method": name, "kind": mcfg["kind"], "label": mcfg.get("label", name),
                         "nfe": r["nfe"], "params": r["params"], "tflops": r["image_flops"] / 1e12,
                         "tflops_per_nfe": r["image_flops"] / 1e12 / r["nfe"], "flops_counted": r["flops_counted"]})
    return {"format": PAPER_TABLE9_FORMAT, "width": width, "height": height, "tasks": list(tasks),
            "config_sources": [_repo_relative(p) for p in config.get("_sources") or []], "rows": rows,
            "not_counted": skipped,
            "count_seconds": round(time.perf_counter() - t0, 1)}


def _repo_relative(path: str) -> str:
    """``config/paper.yaml`` rather than this checkout's absolute path (the file is the same on any machine)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def write_paper_table9(config: dict, out: str | Path, width: int = 1280, height: int = 720) -> dict:
    data = paper_table9(config, width=width, height=height)
    atomic_write_text(Path(out), json.dumps(data, indent=1) + "\n")
    return data
