"""``dpir plan``: what a config costs before anything runs.

For every training job (a network with a ``train`` section, official ones excepted) and every restore
job (one (task, dataset, method, seed) run of :func:`dpir.workflow_facts.all_runs`) the plan counts

- FLOPs per training step: the trainer's own loss on a synthetic batch at the configured batch and
  crop, forward and backward, so a fusion step counts the frozen IR net and denoiser forwards and
  the fusion net's forward + backward exactly as the trainer runs them;
- FLOPs per restored image: the method's own ``restore`` at the test image size, with the NFE its
  counted network calls give (checked against the method's ``expected_nfe()``);

all with :class:`torch.utils.flop_counter.FlopCounterMode` on the META device: networks are built
from the configured architectures and kwargs (:func:`dpir.nets.build_network`), with no weights, no
data and no checkpoint, so a paper-scale plan takes seconds on a laptop.  FLOPs are 2 x MACs of
conv/matmul/attention (FFTs and elementwise ops are not counted), as everywhere in the harness.

Hours = FLOPs / (dense peak rate x efficiency).  The efficiency is either ASSUMED (printed as such)
or MEASURED by ``scripts/bench_gpu.py`` (``--bench FILE``): its achieved TFLOP/s per job and
precision, divided by the peak of the GPU it ran on.

The bench script runs where only torch is installed (no YAML), so it reads the paper jobs from
``benchmarks/paper_jobs.json``, which ``python -m dpir.plan --export-jobs`` writes from the config
(tests/test_bench_gpu.py checks the committed file is fresh).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from dpir.errors import DpirError

#: dense (no structured sparsity) peak rates in TFLOP/s, from the vendors' datasheets:
#:   H100 SXM5 (NVIDIA H100 Tensor Core GPU datasheet): FP32 67, TF32 494.7 (989 with sparsity),
#:     BF16/FP16 989.4 (1,979 with sparsity)
#:   H200 SXM (NVIDIA H200 datasheet): the same compute as H100 SXM (FP32 67, TF32 989 / BF16 1,979
#:     with sparsity); only memory (141 GB HBM3e, 4.8 TB/s) differs
#:   H100 PCIe: FP32 51, TF32 378 (756 sparse), BF16/FP16 756 (1,513 sparse)
#:   A100 SXM/PCIe (NVIDIA A100 datasheet): FP32 19.5, TF32 156, BF16/FP16 312 (624 sparse)
#:   L40S (NVIDIA L40S datasheet): FP32 91.6, TF32 183 (366 sparse), BF16/FP16 362.05 (733 sparse)
#:   L4 (NVIDIA L4 datasheet): FP32 30.3, TF32 60 (120 sparse), BF16/FP16 121 (242 sparse)
ACCELERATORS: dict[str, dict[str, Any]] = {
    "h100": {"name": "NVIDIA H100 SXM", "fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "h200": {"name": "NVIDIA H200 SXM", "fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "h100_pcie": {"name": "NVIDIA H100 PCIe", "fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "a100": {"name": "NVIDIA A100 (SXM or PCIe)", "fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "l40s": {"name": "NVIDIA L40S", "fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05},
    "l4": {"name": "NVIDIA L4", "fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
}
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: the efficiency (achieved / dense peak) assumed without a benchmark: a typical sustained fraction for
#: conv/attention image networks at large batches; ``--bench`` replaces it by a measured one
ASSUMED_EFFICIENCY = 0.35
#: the format tag of the JSON scripts/bench_gpu.py writes
BENCH_FORMAT = "dpir-bench-gpu/1"
JOBS_FORMAT = "dpir-paper-jobs/1"
#: what `--export-jobs` writes by default (read by scripts/bench_gpu.py)
JOBS_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "paper_jobs.json"

#: nominal test images (gt size H x W, count) of the paper's dataset kinds, used when no prepared
#: manifest exists: DIV2K valid (100 x 2040x1356 is the common size; real sizes vary), GoPro test
#: (1111 x 1280x720), HIDE test (2025 x 1280x720), SyntheticBurst validation (300 bursts of 14 RAW
#: frames 48x48 -> 384x384 sRGB)
NOMINAL_TEST = {"div2k": (1356, 2040, 100), "gopro": (720, 1280, 1111), "hide": (720, 1280, 2025),
                "syntheticburst": (384, 384, 300), "zurich": (0, 0, 0)}
#: nominal train images (H, W, count) for the prepared-split disk estimate
NOMINAL_TRAIN = {"div2k": (1356, 2040, 800), "gopro": (720, 1280, 2103), "zurich": (448, 448, 46839)}
#: the fetch names each paper dataset kind downloads (dpir/data/paper.py)
FETCH_NAMES = {"div2k": {"valid": ["div2k_valid_hr", "div2k_valid_lr_x4"], "train": ["div2k_train_hr",
                                                                                     "div2k_train_lr_x4"]},
               "gopro": {"all": ["gopro"]}, "hide": {"all": ["hide"]},
               "syntheticburst": {"all": ["syntheticburst_val"]}, "zurich": {"all": ["zurich_raw2rgb"]}}
#: bytes per pixel of a prepared 8-bit PNG pair (gt + lq), a rough lossless-PNG ratio of ~0.6 x raw RGB
PNG_BYTES_PER_PIXEL = 3 * 0.6


# ------------------------------------------------------------------------------------------------
# counting

def flop_counter():
    """A FlopCounterMode whose convolution backward counts grouped convolutions right.

    torch's own ``conv_backward_flop`` counts the weight gradient of a grouped convolution as if it
    were dense (C_in x C_out instead of C_in x C_out / groups): a depthwise 3x3 conv of 64 channels
    is overcounted 64-fold, which made NAFNet's and DiffIR's backward look 10x their forward.  Here
    each gradient (input, weight) costs exactly the forward convolution's MACs."""
    from torch.utils.flop_counter import FlopCounterMode, conv_flop_count
    import torch

    def conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                      _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
        fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
        return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))

    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward})


def _on_meta(build):
    """Run ``build()`` with META as the default device; a constructor that needs real values (spandrel's
    SwinIR calls ``.item()`` at init) is built on the CPU and moved to META (weights dropped)."""
    import torch

    try:
        with torch.device("meta"):
            return build(), "meta"
    except (RuntimeError, NotImplementedError) as e:
        if "meta" not in str(e).lower():
            raise
    with torch.device("cpu"):
        obj = build()
    return obj, "cpu"


def meta_network(config: dict, name: str):
    """The network ``name`` of the config on the META device, eval, frozen: no weights, no checkpoint."""
    from dpir.config import network_config
    from dpir.nets import build_network

    nc = network_config(config, name)
    if "arch" not in nc:
        raise DpirError(f"networks.{name} has no `arch`: the plan builds every network from its arch and kwargs")
    key = json.dumps([nc["arch"], nc.get("kwargs") or {}], sort_keys=True)
    if key not in _META_NETS:   # frozen and weightless: one instance serves every job that loads it
        net, _ = _on_meta(lambda: build_network(nc["arch"], **(nc.get("kwargs") or {})))
        _META_NETS[key] = net.to("meta").eval().requires_grad_(False)
    return _META_NETS[key]


#: frozen META networks by (arch, kwargs): a CPU-built one (SwinIR) takes seconds to construct
_META_NETS: dict = {}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_train_context(config: dict, task_name: str):
    import torch

    from dpir.train.base import TrainContext

    class MetaContext(TrainContext):
        """Frozen networks built on META from the config, not loaded from checkpoints."""
        loaded: dict

        def load(self, network: str):
            net = meta_network(self.config, network)
            self.loaded[network] = net
            return net

    ctx = MetaContext(task_name=task_name, task=config["tasks"][task_name], networks_dir="<plan: no checkpoints>",
                      device=torch.device("meta"), config=config)
    ctx.loaded = {}
    return ctx


def _synthetic_batch(config: dict, network: str, batch: int, patch: int, with_lq: bool) -> dict:
    """A META batch of the shapes the trainer sees: the task's on-the-fly degradation (if any) is run on
    one small real patch to learn the lq shape and the extras (burst metadata), then scaled."""
    import torch

    from dpir.tasks import train_degradation, train_margin
    from dpir.workflow_facts import task_of_network, train_dataset

    task = config["tasks"][task_of_network(config, network)]
    ds = config["datasets"].get(train_dataset(config, network))
    out = {"gt": torch.empty(batch, 3, patch, patch, device="meta")}
    if not with_lq:
        return out
    degrade = train_degradation(task, ds)
    if degrade is None:
        scale = int(task.get("scale", 1))
        out["lq"] = torch.empty(batch, 3, patch // scale, patch // scale, device="meta")
        return out
    small, m = 32, train_margin(task)
    sample = degrade(torch.rand(3, small + 2 * m, small + 2 * m, generator=torch.Generator().manual_seed(0)),
                     torch.Generator().manual_seed(0))
    if not isinstance(sample, dict):
        sample = {"lq": sample}
    lq = sample["lq"]
    ratio = small / lq.shape[-1]
    out["lq"] = torch.empty(batch, *lq.shape[:-2], round(patch / ratio), round(patch / ratio), device="meta")
    if "gt" in sample:
        out["gt"] = torch.empty(batch, *sample["gt"].shape[:-2], patch, patch, device="meta")
    if "meta" in sample:
        out["meta"] = [sample["meta"]] * batch
    return out


def training_step(config: dict, network: str) -> dict:
    """FLOPs of one training step of ``network`` (forward with the frozen networks, backward), counted
    on META at the configured batch and crop, and the parameter counts."""
    import torch

    from dpir.config import network_config
    from dpir.train.loop import get_trainer
    from dpir.workflow_facts import task_of_network

    nc = network_config(config, network)
    train = nc["train"]
    ctx = _meta_train_context(config, task_of_network(config, network))
    spec, _ = _on_meta(lambda: get_trainer(train["trainer"])(nc, ctx))
    spec.model.to("meta")
    params = list(spec.params) if spec.params is not None else [p for p in spec.model.parameters() if p.requires_grad]
    batch, patch = int(train.get("batch", 8)), int(train.get("patch", 64))
    b = _synthetic_batch(config, network, batch, patch, spec.data != "clean")
    if getattr(spec, "cache_ir", None) and "gt" in b:
        # train.cache_ir: the frozen IR estimates are read from their store, computed once before training
        # (that one pass over the training set is not in the per-step count)
        b["ir"] = torch.empty_like(b["gt"])
    counter = flop_counter()
    with _meta_noise(), counter:
        loss = spec.loss(b, torch.Generator().manual_seed(0))
        forward = counter.get_total_flops()
        loss.backward()
    total = counter.get_total_flops()
    frozen = {n: n_params(m) for n, m in ctx.loaded.items()}
    return {"forward_flops": forward, "backward_flops": total - forward, "step_flops": total,
            "trained_params": sum(p.numel() for p in params), "model_params": n_params(spec.model),
            "frozen": frozen, "batch": batch, "patch": patch}


@contextlib.contextmanager
def _meta_checkpoints(config: dict):
    """Method factories load their networks with ``dpir.checkpoint.load_network(folder, device)``; inside
    this block that returns the config's network built on META instead (the folder's last part is the
    network's name, :func:`dpir.paths.network_dir`)."""
    import dpir.checkpoint as ck

    original = ck.load_network

    def load(directory, device="cpu", expect_arch=None):
        name = Path(directory).name
        net = meta_network(config, name)
        arch = config["networks"][name].get("arch")
        if expect_arch is not None and arch != expect_arch:
            raise DpirError(f"networks.{name} has arch {arch!r}, the method needs {expect_arch!r}")
        return net
    patched = [m for m in list(sys.modules.values()) if getattr(m, "load_network", None) is original]
    for m in patched:
        m.load_network = load
    ck.load_network = load
    try:
        yield
    finally:
        ck.load_network = original
        for m in patched:
            m.load_network = original


def build_meta_method(config: dict, task: str, method: str):
    """The method ``method`` of ``task`` with every network on META (no checkpoints read)."""
    import torch

    from dpir.methods import build_method
    from dpir.methods.base import BuildContext
    from dpir.workflow_facts import method_of

    mcfg = method_of(config, task, method)
    ctx = BuildContext(task_name=task, task=config["tasks"][task], networks_dir="<plan>", device=torch.device("meta"),
                       config=config)
    ctx.method_name = method          # named in the one-line errors of user-supplied methods
    if mcfg["kind"] == "checkpoint":   # its architecture is the file's: read it on the CPU, then move to META
        m = build_method(mcfg, ctx)
    else:
        with _meta_checkpoints(config):
            m, _ = _on_meta(lambda: build_method(mcfg, ctx))
    m.to(torch.device("meta")).eval()
    return m


@contextlib.contextmanager
def _meta_noise():
    """Noise drawn for a META tensor is an empty META tensor: :mod:`dpir.rng` draws on the CPU and
    moves the result, which at 2K per step was most of a 1001-step chain's counting time.  Draws for
    the CPU (a trainer's t ~ U{1..tau}, used as an index) are untouched."""
    import torch

    import dpir.rng as rng

    original = getattr(rng, "_draw", None)
    if original is None:       # dpir.rng changed: count with real draws (slower, same FLOPs)
        yield
        return

    def draw(fn, shape, generator, device, dtype):
        if device is not None and torch.device(device).type == "meta":
            return torch.empty(tuple(int(v) for v in shape), dtype=dtype, device="meta")
        return original(fn, shape, generator, device, dtype)
    rng._draw = draw
    try:
        yield
    finally:
        rng._draw = original


@contextlib.contextmanager
def _memo_forwards(modules, counter):
    """Run each module's forward once per input shape; a repeated call (the 1001 steps of a full chain)
    returns an empty META output of the same shape and adds the FLOPs the first call counted, so a
    full chain is counted in seconds.  Yields a one-element list: the replayed FLOPs."""
    import torch
    from torch.utils._pytree import tree_flatten, tree_map

    replayed = [0]
    saved = []

    def key_of(args, kwargs):
        leaves, _ = tree_flatten((args, kwargs))
        return tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__ for x in leaves)

    for mod in dict.fromkeys(modules):
        memo: dict = {}
        original = mod.forward

        def forward(*args, _original=original, _memo=memo, **kwargs):
            key = key_of(args, kwargs)
            if key in _memo:
                flops, out = _memo[key]
                replayed[0] += flops
                return tree_map(lambda x: torch.empty_like(x) if isinstance(x, torch.Tensor) else x, out)
            before = counter.get_total_flops()
            out = _original(*args, **kwargs)
            _memo[key] = (counter.get_total_flops() - before, out)
            return out
        saved.append((mod, vars(mod).get("forward")))
        mod.forward = forward
    try:
        yield replayed
    finally:
        for mod, previous in saved:
            if previous is None:
                del mod.forward
            else:
                mod.forward = previous


def restore_image(config: dict, task: str, method: str, height: int, width: int) -> dict:
    """FLOPs and counted NFE of restoring one image whose output is ``height x width``, on META."""
    import inspect

    import torch

    from dpir.measure import count_nfe
    from dpir.tasks import output_scale

    tcfg = config["tasks"][task]
    m = build_meta_method(config, task, method)
    if not m.nfe_groups():   # no network (bicubic, the observation itself): nothing FlopCounterMode counts
        return {"image_flops": 0, "nfe": 0, "expected_nfe": 0, "params": 0, "flops_counted": True}
    s = output_scale(tcfg)
    kwargs = {}
    if tcfg["kind"] == "burst":
        from dpir.data.burst import synthesize_burst
        from dpir.tasks import burst_margin, burst_settings

        n, bcfg = burst_settings(tcfg)
        mg, small = burst_margin(tcfg), 32
        frames, _, meta = synthesize_burst(torch.rand(3, small + 2 * mg, small + 2 * mg,
                                                      generator=torch.Generator().manual_seed(0)),
                                           n, torch.Generator().manual_seed(0), bcfg)
        y = torch.empty(1, *frames.shape[:-2], height // s, width // s, device="meta")
        if "meta" in inspect.signature(m.restore).parameters:
            kwargs["meta"] = [meta]
    else:
        y = torch.empty(1, 3, height // s, width // s, device="meta")
    counter = flop_counter()
    mods = [mod for group in m.nfe_groups().values() for mod in group]
    with torch.no_grad(), _meta_noise(), count_nfe(m) as calls, counter, _memo_forwards(mods, counter) as replayed:
        m.restore(y, [torch.Generator().manual_seed(0)], **kwargs)
    try:
        expected = m.expected_nfe()
    except NotImplementedError:
        expected = None
    return {"image_flops": counter.get_total_flops() + replayed[0], "nfe": calls.total, "expected_nfe": expected,
            "params": sum(n_params(mod) for mod in m.modules().values()), "flops_counted": m.flops_counted}


def _missing_checkpoint(config: dict, mcfg: dict) -> str | None:
    """What a ``checkpoint`` row's file is and how to get it, when it is not on this machine (else None)."""
    from pathlib import Path

    from dpir import fetch
    from dpir.workflow_facts import expand_path

    spec = expand_path(config, mcfg["path"])
    if spec in fetch.list_names("weights"):
        from dpir.fetch import registry

        path = registry.get(spec).path
        return None if path.is_file() else f"{path} (`dpir fetch {spec}`)"
    return None if Path(spec).expanduser().is_file() else spec


def _restore_image_or_note(config: dict, task: str, method: str, height: int, width: int) -> dict:
    """:func:`restore_image`, or zero cost with a ``not_planned`` note for a row the plan cannot count: a
    folder of outputs made elsewhere (its declared NFE is kept), a checkpoint whose file is not here yet (its
    architecture is read off the file), a user's Python model whose code fails to build."""
    from dpir.workflow_facts import is_outputs, method_of

    mcfg = method_of(config, task, method)
    empty = {"image_flops": 0, "nfe": None, "expected_nfe": None, "params": 0, "flops_counted": False}
    if is_outputs(mcfg):
        return {**empty, "nfe": mcfg.get("nfe"), "not_planned": "restored outside the harness (kind outputs)"}
    if mcfg["kind"] == "checkpoint":         # the plan never downloads: a file that is not here is not counted
        missing = _missing_checkpoint(config, mcfg)
        if missing:
            return {**empty, "not_planned": f"not counted: its architecture is read from {missing}, not here yet"}
    try:
        return restore_image(config, task, method, height, width)
    except DpirError as e:
        if mcfg["kind"] not in ("checkpoint", "python"):
            raise
        return {**empty, "not_planned": f"not counted: {e}"}


# ------------------------------------------------------------------------------------------------
# sizes, disk, images

def _bundled_test(config: dict, ds: dict) -> tuple[list[tuple[int, int]], str]:
    from dpir.data import bundled

    crop = ds.get("test_crop")
    sizes = []
    for name in bundled.TEST:
        h, w = bundled.load(name).shape[:2]
        sizes.append((min(h, crop), min(w, crop)) if crop else (h, w))
    return sizes, "bundled images"


def test_images(config: dict, task: str, dataset: str) -> tuple[list[tuple[int, int]], str]:
    """The gt (output) sizes of a test split and where they come from: the prepared manifest when there
    is one, else the dataset kind's nominal size and count."""
    from dpir import paths

    man = paths.manifest(config, task, dataset)
    if man.is_file():
        split = json.loads(man.read_text())["splits"].get("test") or {}
        return [tuple(int(v) for v in split["sizes"][i]) for i in split.get("ids", [])], f"manifest {man}"
    ds = config["datasets"][dataset]
    kind = ds["kind"]
    if kind == "bundled":
        sizes, src = _bundled_test(config, ds)
    elif kind in NOMINAL_TEST:
        h, w, n = NOMINAL_TEST[kind]
        sizes, src = [(h, w)] * n, f"nominal {kind} test size"
    else:
        raise DpirError(f"datasets.{dataset}: kind {kind!r} has no nominal test size; run `dpir prepare --task "
                        f"{task} --dataset {dataset}` so the plan can read its manifest")
    crop = ds.get("test_crop")
    if crop and kind != "bundled":
        sizes = [(min(h, crop), min(w, crop)) for h, w in sizes]
    limit = ds.get("max_test_images")
    return (sizes[:limit] if limit else sizes), src


def _registry_sizes() -> dict[str, int | None]:
    reg = json.loads((Path(__file__).resolve().parent / "fetch" / "registry.json").read_text())
    return {e["name"]: e.get("size") for e in reg["entries"]}


def dataset_disk(config: dict, dataset: str) -> dict:
    """Download bytes (registry sizes; None where unpublished) and a prepared-split estimate."""
    ds = config["datasets"][dataset]
    kind = ds["kind"]
    sizes = _registry_sizes()
    names = [n for part in FETCH_NAMES.get(kind, {}).values() for n in part]
    if kind == "div2k" and ds.get("lr") != "official":
        names = [n for n in names if "_lr_" not in n]
    known = [sizes.get(n) for n in names]
    download = sum(s for s in known if s) if names else 0
    unknown = [n for n, s in zip(names, known) if not s]
    h, w, n = NOMINAL_TRAIN.get(kind, (0, 0, 0))
    th, tw, tn = NOMINAL_TEST.get(kind, (0, 0, 0))
    prepared = int(PNG_BYTES_PER_PIXEL * (h * w * n + th * tw * tn) * 1.0625)   # + lq at 1/16 (x4 SR)
    return {"download_bytes": download, "unknown_size": unknown, "prepared_bytes_estimate": prepared}


# ------------------------------------------------------------------------------------------------
# rates

def read_bench(path: str | Path) -> dict:
    """The JSON of scripts/bench_gpu.py, checked; one line naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DpirError(f"--bench {path}: no such file; run `PYTHONPATH=. python scripts/bench_gpu.py --out {path}` "
                        f"on the GPU first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DpirError(f"--bench {path} is not a JSON file ({e}); pass the file scripts/bench_gpu.py wrote") from None
    ok = (isinstance(data, dict) and data.get("format") == BENCH_FORMAT and isinstance(data.get("results"), list)
          and all(isinstance(r, dict) and isinstance(r.get("job"), str) and r.get("precision") in PRECISIONS
                  and r.get("status") in ("ok", "oom", "error", "skipped") for r in data["results"]))
    if not ok:
        raise DpirError(f"--bench {path} is not a scripts/bench_gpu.py result (expected format {BENCH_FORMAT!r} with "
                        f"a list `results` of {{job, kind, precision, status, achieved_tflops}}); re-run the script")
    for r in data["results"]:
        if r["status"] == "ok" and not (isinstance(r.get("achieved_tflops"), (int, float)) and r["achieved_tflops"] > 0):
            raise DpirError(f"--bench {path}: result {r['job']}/{r['precision']} has status ok but no positive "
                            f"achieved_tflops; re-run the script")
    return data


def accelerator(name: str) -> dict:
    key = name.lower().replace("-", "_")
    if key not in ACCELERATORS:
        raise DpirError(f"--accelerator {name!r} is not known; known: {', '.join(ACCELERATORS)}")
    return {"key": key, **ACCELERATORS[key]}


def efficiency(bench: dict | None, job: str, kind: str, precision: str, acc: dict) -> tuple[float, str]:
    """(efficiency, source): the measured achieved/peak of this job (or, failing that, the median of its
    kind) at this precision on the benchmarked GPU, else :data:`ASSUMED_EFFICIENCY`."""
    if bench:
        bkey = bench.get("accelerator")
        peak = ACCELERATORS.get(bkey, acc)[precision] if bkey in ACCELERATORS else acc[precision]
        ok = [r for r in bench["results"] if r["status"] == "ok" and r["precision"] == precision]
        mine = [r for r in ok if r["job"] == job]
        if mine:
            return mine[0]["achieved_tflops"] / peak, f"measured ({job})"
        same = sorted(r["achieved_tflops"] for r in ok if r.get("kind") == kind)
        if same:
            return same[len(same) // 2] / peak, f"measured (median {kind})"
    return ASSUMED_EFFICIENCY, f"assumed {ASSUMED_EFFICIENCY:.0%}"


# ------------------------------------------------------------------------------------------------
# the plan

def training_networks(config: dict) -> list[str]:
    from dpir.workflow_facts import is_official

    return [n for n, nc in config["networks"].items() if nc.get("train") and not is_official(config, n)]


def make_plan(config: dict, accel: str = "h100", precision: str = "bf16", bench: dict | None = None) -> dict:
    from dpir.workflow_facts import all_runs

    if precision not in PRECISIONS:
        raise DpirError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    acc = accelerator(accel)
    peak = acc[precision] * 1e12
    jobs = []
    for net in training_networks(config):
        c = training_step(config, net)
        steps = int(config["networks"][net]["train"]["steps"])
        eff, src = efficiency(bench, net, "train", precision, acc)
        flops = c["step_flops"] * steps
        jobs.append({"kind": "train", "job": net, "trainer": config["networks"][net]["train"]["trainer"], **c,
                     "steps": steps, "total_flops": flops, "efficiency": eff, "efficiency_source": src,
                     "hours": flops / (peak * eff) / 3600,
                     "checkpoint_bytes": 4 * c["model_params"],
                     # Adam in fp32: weights 4 + gradients 4 + two moments 8 bytes per trained parameter
                     "memory_bytes": 16 * c["trained_params"] + 4 * (c["model_params"] - c["trained_params"])
                     + 4 * sum(c["frozen"].values())})
    cache: dict = {}
    for task, ds, method, seed in all_runs(config):
        sizes, src_sizes = test_images(config, task, ds)
        from dpir.workflow_facts import method_of

        limit = method_of(config, task, method).get("max_images")
        sizes = sizes[:limit] if limit else sizes
        flops, nfe, params, counted = 0, None, 0, True
        for h, w in sorted(set(sizes)):
            key = (task, method, h, w)
            if key not in cache:
                cache[key] = _restore_image_or_note(config, task, method, h, w)
            r = cache[key]
            flops += r["image_flops"] * sizes.count((h, w))
            nfe, params, counted = r["nfe"], r["params"], r["flops_counted"]
        eff, src = efficiency(bench, f"{task}/{method}", "restore", precision, acc)
        shape = f"{sizes[0][1]}x{sizes[0][0]}" if sizes and len(set(sizes)) == 1 else "mixed"
        jobs.append({"kind": "restore", "job": f"{task}/{ds}/{method}/seed{seed}", "task": task, "dataset": ds,
                     "method": method, "seed": seed, "images": len(sizes), "image_size": shape,
                     "sizes_from": src_sizes, "nfe": nfe, "expected_nfe": cache[key]["expected_nfe"] if sizes else None,
                     "image_flops": flops / max(len(sizes), 1), "total_flops": flops, "flops_counted": counted,
                     "memory_bytes": 4 * params, "efficiency": eff, "efficiency_source": src,
                     "hours": flops / (peak * eff) / 3600,
                     "not_planned": cache[key].get("not_planned") if sizes else None})
    from dpir.workflow_facts import train_dataset

    datasets = sorted({ds for _, ds, _, _ in all_runs(config)} | {train_dataset(config, n)
                                                                 for n in training_networks(config)})
    disk = {d: dataset_disk(config, d) for d in datasets if d in config["datasets"]}
    total_hours = sum(j["hours"] for j in jobs)
    largest = max(jobs, key=lambda j: j["hours"]) if jobs else None
    return {"accelerator": acc, "precision": precision, "peak_tflops": acc[precision],
            "bench": bool(bench), "jobs": jobs, "disk": disk,
            "totals": {"gpu_hours": total_hours, "train_hours": sum(j["hours"] for j in jobs if j["kind"] == "train"),
                       "restore_hours": sum(j["hours"] for j in jobs if j["kind"] == "restore"),
                       "total_pflop": sum(j["total_flops"] for j in jobs) / 1e15,
                       "largest_job": largest["job"] if largest else None,
                       "largest_job_hours": largest["hours"] if largest else 0.0,
                       "download_bytes": sum(d["download_bytes"] for d in disk.values()),
                       "prepared_bytes_estimate": sum(d["prepared_bytes_estimate"] for d in disk.values()),
                       "checkpoint_bytes": sum(j.get("checkpoint_bytes", 0) for j in jobs)}}


def _gb(b: float) -> str:
    return f"{b / 1e9:.3g} GB"


def markdown(plan: dict) -> str:
    acc, prec = plan["accelerator"], plan["precision"]
    lines = [f"# Plan: {acc['name']} at {prec} (dense peak {plan['peak_tflops']:g} TFLOP/s)", "",
             "## Training jobs", "",
             "| network | trainer | batch x crop | TFLOP/step (fwd + bwd) | steps | PFLOP | params trained / frozen "
             "| memory (no activations) | efficiency | GPU-hours |", "|---|---|---|---|---|---|---|---|---|---|"]
    for j in plan["jobs"]:
        if j["kind"] != "train":
            continue
        lines.append(f"| {j['job']} | {j['trainer']} | {j['batch']} x {j['patch']} | {j['step_flops'] / 1e12:.3g} "
                     f"({j['forward_flops'] / 1e12:.3g} + {j['backward_flops'] / 1e12:.3g}) | {j['steps']:,} | "
                     f"{j['total_flops'] / 1e15:,.0f} | {j['trained_params'] / 1e6:.3g}M / "
                     f"{sum(j['frozen'].values()) / 1e6:.3g}M | {_gb(j['memory_bytes'])} | {j['efficiency_source']} | "
                     f"{j['hours']:,.3g} |")
    lines += ["", "## Restore jobs", "", "| run | images | output size | NFE | TFLOP/image | PFLOP | efficiency "
              "| GPU-hours |", "|---|---|---|---|---|---|---|---|"]
    for j in plan["jobs"]:
        if j["kind"] != "restore":
            continue
        flag = "" if j["flops_counted"] else " (not counted: runs outside torch)"
        if j.get("not_planned"):
            flag = f" ({j['not_planned']})"
        lines.append(f"| {j['job']} | {j['images']} | {j['image_size']} | {j['nfe']} | {j['image_flops'] / 1e12:.4g}"
                     f"{flag} | {j['total_flops'] / 1e15:.4g} | {j['efficiency_source']} | {j['hours']:.3g} |")
    lines += ["", "## Disk", "", "| dataset | downloads | prepared (estimate) |", "|---|---|---|"]
    for d, v in plan["disk"].items():
        unk = f" + {', '.join(v['unknown_size'])} (size not published)" if v["unknown_size"] else ""
        lines.append(f"| {d} | {_gb(v['download_bytes'])}{unk} | {_gb(v['prepared_bytes_estimate'])} |")
    t = plan["totals"]
    lines += ["", f"**Total: {t['gpu_hours']:,.1f} GPU-hours** ({t['train_hours']:,.1f} training, "
              f"{t['restore_hours']:,.1f} restoring; {t['total_pflop']:,.0f} PFLOP); largest job {t['largest_job']} "
              f"({t['largest_job_hours']:,.1f} h).  Disk: {_gb(t['download_bytes'])} downloads, "
              f"{_gb(t['prepared_bytes_estimate'])} prepared, {_gb(t['checkpoint_bytes'])} checkpoints.", "",
              "Notes: FLOPs = 2 x MACs of conv/matmul/attention counted with FlopCounterMode on the META device "
              "(no weights, no data; FFTs and elementwise ops not counted; a grouped convolution's backward "
              "counted at its true cost, see dpir.plan.flop_counter).  Training step = the trainer's own loss "
              "(frozen networks forward, trained network forward + backward), optimiser update not counted.  "
              "Memory = weights + gradients + Adam moments (16 B per trained parameter) + frozen weights "
              "(4 B/param); activations not estimated.  Prepared split sizes are estimates (8-bit PNG ~0.6 x "
              "raw).  Hours = FLOPs / (dense peak x efficiency); "
              + ("efficiency measured by scripts/bench_gpu.py where a job was benchmarked." if plan["bench"]
                 else f"efficiency ASSUMED {ASSUMED_EFFICIENCY:.0%} (measure it: scripts/bench_gpu.py, then "
                      f"`dpir plan --bench FILE`).")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# jobs for the benchmark script (torch only, no YAML)

def export_jobs(config: dict) -> dict:
    """The paper-scale training jobs and the DP-IR restore, as plain JSON for scripts/bench_gpu.py:
    each network's arch and kwargs, the trainer's shape facts, and the counted FLOPs per step."""
    from dpir.config import network_config
    from dpir.workflow_facts import task_of_network

    wanted = [n for n in ("mirnet_s", "fusion_sr", "fusion_deblur", "fusion_burst") if n in training_networks(config)]

    def net(name):
        nc = network_config(config, name)
        return {"name": name, "arch": nc["arch"], "kwargs": nc.get("kwargs") or {}}
    jobs = []
    for n in wanted:
        tr = config["networks"][n]["train"]
        task = config["tasks"][task_of_network(config, n)]
        c = training_step(config, n)
        job = {"job": n, "kind": "train", "trainer": tr["trainer"], "task_kind": task["kind"],
               "scale": int(task.get("scale", 1)), "batch": int(tr["batch"]), "patch": int(tr["patch"]),
               "network": net(n), "step_flops": c["step_flops"]}
        if tr["trainer"] == "fusion":
            lq = _synthetic_batch(config, n, 1, int(tr["patch"]), True)["lq"]
            job.update(ir=net(tr["ir"]), denoiser=net(tr["denoiser"]), tau=int(tr["tau"]), T=int(tr.get("T", 1000)),
                       lq_dims=list(lq.shape[1:-2]), lq_divisor=int(tr["patch"]) // int(lq.shape[-1]))
            if task["kind"] == "burst":
                from dpir.tasks import burst_margin, burst_settings

                size, bcfg = burst_settings(task)
                job.update(burst_size=size, burst_cfg=bcfg, burst_margin=burst_margin(task))
        elif tr["trainer"] == "denoiser":
            job["sigma_max"] = float(tr.get("sigma_max", 244.3 / 255))
        jobs.append(job)
    m = (config["tasks"].get("sr") or {}).get("methods", {}).get("dpir_jump_ddim")
    if m:
        r = restore_image(config, "sr", "dpir_jump_ddim", 1356, 2040)
        jobs.append({"job": "sr/dpir_jump_ddim", "kind": "restore", "task_kind": "sr", "scale": 4,
                     "height": 1356, "width": 2040, "tau": int(m["tau"]), "ddim_stride": int(m.get("ddim_stride") or 1),
                     "T": int(m.get("T", 1000)), "ir": net(m["ir"]), "denoiser": net(m["denoiser"]),
                     "fusion": net(m["fusion"]), "nfe": r["nfe"], "image_flops": r["image_flops"]})
    return {"format": JOBS_FORMAT, "about": "written by `python -m dpir.plan --config config/paper.yaml "
            "--export-jobs benchmarks/paper_jobs.json`; read by scripts/bench_gpu.py (no YAML there). "
            "FLOPs counted by dpir.plan on the META device.", "jobs": jobs}


# ------------------------------------------------------------------------------------------------
# command line

def add_parser(subparsers) -> argparse.ArgumentParser:
    sp = subparsers.add_parser("plan", help="predict FLOPs, disk, memory and GPU-hours of every job of a config",
                               description="predict FLOPs, disk, memory and GPU-hours of every job of a config "
                               "(counted on the META device: no weights or data needed)")
    sp.set_defaults(func=run)
    sp.add_argument("--config", "-c", action="append", help="config YAML layered over the default config "
                    "(repeatable; later files override earlier ones), as Snakemake's --configfile")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config value")
    sp.add_argument("--accelerator", default="h100", help=f"GPU whose peak rates to use ({', '.join(ACCELERATORS)})")
    sp.add_argument("--precision", default="bf16", help=f"precision of the rate ({', '.join(PRECISIONS)})")
    sp.add_argument("--bench", help="JSON written by scripts/bench_gpu.py: measured efficiencies")
    sp.add_argument("--json", help="also write the plan as JSON to this file")
    sp.add_argument("--export-jobs", metavar="FILE", help="write the paper jobs for scripts/bench_gpu.py and exit")
    sp.add_argument("--table9", metavar="FILE", help="count only Table 9 (TFLOPs per 1280x720 output of the deblur "
                    "and sr methods, on META; ~30 s for config/paper.yaml), write it as JSON to FILE and exit")
    return sp


def run(args) -> int:
    import torch

    from dpir.checkpoint import atomic_write_text
    from dpir.cli import config_files, parse_set
    from dpir.config import load_config

    accelerator(args.accelerator)      # a bad name fails before the counting starts
    bench = read_bench(args.bench) if args.bench else None
    config = load_config(config_files(args.config), parse_set(args.set))
    torch.set_num_threads(max(1, min(4, int(config.get("threads", 1)))))
    if args.export_jobs:
        atomic_write_text(Path(args.export_jobs), json.dumps(export_jobs(config), indent=1) + "\n")
        print(f"wrote {args.export_jobs}")
        return 0
    if args.table9:
        from dpir.report.paper_cost import table9_section
        from dpir.tflops import write_paper_table9

        data = write_paper_table9(config, args.table9)
        print("\n".join(table9_section(data)))
        print(f"wrote {args.table9}")
        return 0
    plan = make_plan(config, args.accelerator, args.precision, bench)
    print(markdown(plan))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(plan, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    import warnings

    from dpir.cli import one_line

    p = argparse.ArgumentParser(prog="dpir")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["plan", *(argv or [])])
    warnings.filterwarnings("ignore", message=r".*torch\.meshgrid.*")
    try:
        return args.func(args)
    except DpirError as e:
        print(f"dpir: error: {one_line(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
