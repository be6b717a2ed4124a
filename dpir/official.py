"""``dpir import-official``: turn an official checkpoint into a network of the workflow.

A network entry of the config with ``official: <fetch name or path>`` is never trained.  Instead its
released weights are resolved (a :mod:`dpir.fetch` registry name is fetched and verified; an existing
path is used as is), loaded into the architecture built from the entry's ``kwargs`` and saved with
:func:`dpir.checkpoint.save_network` into ``<out>/networks/<network>/``, exactly where ``dpir train``
would have written it.  Every later stage therefore reads one format; the JSON records where the
weights came from (``official_source``, ``official_path``) and the file's ``official_sha256``.

The import holds the network folder's lock (``.<network>.lock``, :func:`dpir.atomic.exclusive_lock`, the
lock ``dpir train`` takes too), so two imports of one network (a job left running after Snakemake was
killed, then a re-run) take turns; one that had to wait and finds the network the other imported from
the same file (source, SHA-256, architecture and kwargs) returns it without importing again.

Loaders by architecture (the file layouts differ):

- ``srdiff``: :func:`baselines.srdiff.checkpoint.load_official` (Lightning-style ``state_dict.model``;
  unspecified architecture values are read off the tensor shapes and saved with the weights);
- ``diffir_s1`` / ``diffir_s2``: :func:`baselines.diffir.checkpoint.load_official` (BasicSR file with
  duplicated key families and schedule buffers), unexpected keys listed in a warning (official
  ``strict_load_g: False``, :data:`PROTOCOLS`);
- ``rrdb``: BasicSR/ESRGAN "new" key layout (``conv_first``, ``body.N.rdbM.convK``, ``conv_body``,
  ``conv_up1``, ``conv_hr``, ``conv_last``; or the older ``RRDB_trunk``/``trunk_conv``/``upconv``/``HRconv``
  names; ``params`` over ``params_ema``) is renamed to the sequential layout of spandrel's RRDBNet, then
  loaded strictly;
- ``spandrel`` (no kwargs): any checkpoint spandrel detects (:func:`dpir.nets.foreign.load_foreign`); the
  detected facts (architecture, scale, channels, parameters, padding multiple) go into ``model.json`` as
  ``foreign``, and :func:`dpir.checkpoint.load_network` rebuilds the network from its saved weights;
- everything else: the state dict under the first of the row's ``prefer`` keys (:data:`PROTOCOLS`:
  ``params`` first for SwinIR, ``params_ema`` / ``params`` / ``state_dict`` by default) or the raw file,
  a DDP ``module.`` prefix stripped, loaded under the row's key policy (strict by default).  This
  covers SwinIR (``params``), FFTformer (the release file is a raw state dict, loaded strictly by the
  official test script; spandrel's FFTformer has the official module tree, so the names match), NAFNet,
  our own archs, and BSRT: the official code saves ``model.state_dict()`` raw (a ``module.`` prefix when
  saved from DDP), and :class:`dpir.nets.burst.BSRT` at the official configuration names every official
  parameter as the official code does (by construction; not checked against the real file, which is on
  Google Drive only); the official ``attn_mask`` buffers are dropped (ours are recomputed, not saved).

Official test protocols (:data:`PROTOCOLS`, one row per architecture, each with its source): which
entry of a file holding both ``params`` and ``params_ema`` the official test loads, what it does with
keys that do not fit (an error, a warning listing them, or nothing), and how it runs the network --
padding, precision, SRDiff's residual reference.  The run facts are saved in ``model.json`` as
``official_inference``; :func:`dpir.checkpoint.load_network` puts them on the module, and the backbone
rows, DP-IR's IR call (:func:`dpir.methods.simple.restore_padded`) and SRDiff read them from there, so
config rows need nothing.

The BSRT release is one Google Drive file whose format is not documented ("all pretrained model weights"):
its registry entry ``bsrt_weights`` has ``member`` globs, so ``dpir fetch`` takes the synthetic BSRT-Small
checkpoint out of it if it is an archive (or uses it as is if it is one checkpoint), and
:func:`resolve_official` gets that file.  :func:`check_single_checkpoint` still refuses a bundle given as
a path (naming its members).
"""
from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpir import paths
from dpir.atomic import exclusive_lock, file_stamp
from dpir.checkpoint import (
    META_FILE,
    MODEL_FILE,
    load_state,
    read_meta,
    save_network,
    select_params,
)
from dpir.config import network_config
from dpir.errors import DpirError

log = logging.getLogger(__name__)


def resolve_official(spec: str, where: str = "official") -> tuple[Path, str]:
    """``(local file, source description)`` of an ``official:`` value: a fetch registry name of kind
    ``weights`` (fetched and verified, so a pre-staged file is checked too) or an existing file."""
    from dpir import fetch

    names = fetch.list_names("weights")
    if spec in names:
        return Path(fetch.fetch(spec, progress=False)), f"fetch:{spec}"
    if spec in fetch.list_names("dataset"):
        raise DpirError(f"config key {where!r} names {spec!r}, which is a dataset of the fetch registry, "
                        f"not weights")
    path = Path(spec).expanduser()
    if path.is_file():
        return path, f"file:{path}"
    import difflib

    close = difflib.get_close_matches(spec, names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise DpirError(f"config key {where!r} is {spec!r}: neither a weights name of the fetch registry "
                    f"(`dpir fetch --list`) nor an existing file.{hint}")


# --------------------------------------------------------------------------------------------
# RRDB: BasicSR key names -> spandrel's sequential ESRGAN layout
#   model.0 conv_first | model.1.sub.<i>.RDB<j>.conv<k>.0 body.<i>.rdb<j>.conv<k> | model.1.sub.<nb>
#   conv_body | model.<3u> conv_up<u> | model.<3U+2> conv_hr | model.<3U+4> conv_last  (U = log2 scale)

_RRDB_BLOCK = re.compile(r"^(?:body|RRDB_trunk)\.(\d+)\.(?:rdb|RDB)(\d)\.conv(\d)\.(weight|bias)$")
_RRDB_UP = re.compile(r"^(?:conv_up|upconv)(\d)\.(weight|bias)$")


def rrdb_to_sequential(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a BasicSR-layout RRDBNet state dict to spandrel's layout (a state dict already in that
    layout, ``model.0.weight`` ..., is returned unchanged)."""
    if "conv_first.weight" not in state:
        return dict(state)
    blocks = {int(m.group(1)) for k in state if (m := _RRDB_BLOCK.match(k))}
    ups = {int(m.group(1)) for k in state if (m := _RRDB_UP.match(k))}
    nb, n_up = (max(blocks) + 1 if blocks else 0), (max(ups) if ups else 0)
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        suffix = k.rsplit(".", 1)[-1]
        if m := _RRDB_BLOCK.match(k):
            new = f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{suffix}"
        elif m := _RRDB_UP.match(k):
            new = f"model.{3 * int(m.group(1))}.{suffix}"
        else:
            stem = k.rsplit(".", 1)[0]
            new = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "trunk_conv": f"model.1.sub.{nb}",
                   "conv_hr": f"model.{3 * n_up + 2}", "HRconv": f"model.{3 * n_up + 2}",
                   "conv_last": f"model.{3 * n_up + 4}"}.get(stem)
            new = f"{new}.{suffix}" if new else k      # unknown keys stay: the strict load names them
        out[new] = v
    return out


_SEQ_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_SEQ_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_SEQ_BODY = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")


def rrdb_from_sequential(state: dict[str, torch.Tensor], old: bool = False) -> dict[str, torch.Tensor]:
    """The inverse of :func:`rrdb_to_sequential`: spandrel's sequential RRDBNet names to BasicSR's
    (``conv_first``, ``body.N.rdbM.convK``, ``conv_body``, ``conv_up<u>``, ``conv_hr``, ``conv_last``) or,
    with ``old``, to the older ESRGAN names (``RRDB_trunk.N.RDBM.convK``, ``trunk_conv``, ``upconv<u>``,
    ``HRconv``).  Only the plain RRDBNet has these layouts: a key of another variant (ESRGAN+'s
    ``conv1x1``, a pixel-shuffle upsampler) is a ValueError naming it."""
    blocks = {int(m.group(1)) for k in state if (m := _SEQ_BLOCK.match(k))}
    tops = sorted({int(m.group(1)) for k in state if (m := _SEQ_TOP.match(k))})
    nb = max(blocks) + 1 if blocks else 0
    if not tops or tops[0] != 0 or (tops[-1] - 4) % 3:
        raise ValueError("not a sequential RRDBNet state dict (model.0 ... model.<3U+4>)")
    n_up = (tops[-1] - 4) // 3
    stems = {0: "conv_first", 3 * n_up + 2: "HRconv" if old else "conv_hr", 3 * n_up + 4: "conv_last",
             **{3 * u: f"{'upconv' if old else 'conv_up'}{u}" for u in range(1, n_up + 1)}}
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if m := _SEQ_BLOCK.match(k):
            i, j, c, suffix = m.groups()
            new = f"RRDB_trunk.{i}.RDB{j}.conv{c}.{suffix}" if old else f"body.{i}.rdb{j}.conv{c}.{suffix}"
        elif (m := _SEQ_BODY.match(k)) and int(m.group(1)) == nb:
            new = f"{'trunk_conv' if old else 'conv_body'}.{m.group(2)}"
        elif (m := _SEQ_TOP.match(k)) and int(m.group(1)) in stems:
            new = f"{stems[int(m.group(1))]}.{m.group(2)}"
        else:
            raise ValueError(f"key {k!r} has no name in the BasicSR/ESRGAN RRDBNet layout")
        out[new] = v
    return out


# --------------------------------------------------------------------------------------------
# official test protocols

@dataclass(frozen=True)
class Protocol:
    """How an architecture's official test code loads and runs its released weights.

    ``prefer``: the entries of a BasicSR-style file tried in order (the first that holds a dict is the
    state dict; a file with none of them is a raw state dict).  ``unexpected`` / ``missing``: the
    :func:`dpir.checkpoint.load_state` policy (``error`` | ``warn`` | ``ignore``) for keys in the file the
    network lacks / keys the network has that the file lacks.  ``pad_mode`` / ``pad_multiple``: the
    test-time padding (:func:`dpir.methods.simple.pad_to_multiple`; ``pad_multiple`` None: the network's
    window size, else no multiple recorded); ``precision``: the official forward's autocast;
    ``extra``: architecture-specific facts (SRDiff's ``residual_reference``)."""

    source: str
    prefer: tuple[str, ...] = ("params_ema", "params", "state_dict")
    unexpected: str = "error"
    missing: str = "error"
    pad_mode: str | None = None
    pad_multiple: int | None = None
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    def inference(self, model: nn.Module) -> dict[str, Any]:
        """The run facts saved as ``official_inference`` in ``model.json``."""
        out: dict[str, Any] = {"precision": self.precision, "source": self.source, **self.extra}
        if self.pad_mode:
            multiple = self.pad_multiple or getattr(model, "window_size", None)
            out.update(pad_mode=self.pad_mode, **({"pad_multiple": int(multiple)} if multiple else {}))
        return out


#: per architecture; an architecture not listed gets :data:`DEFAULT_PROTOCOL`
PROTOCOLS: dict[str, Protocol] = {
    # JingyunLiang/SwinIR main_test_swinir.py: param_key_g = 'params' for classical/lightweight SR, denoising
    # and JPEG ('params_ema' only for real-world SR, which this harness does not import); the whole file
    # when the key is absent; load_state_dict(strict=True); the input flipped-and-concatenated to
    # (h // window_size + 1) * window_size, the output cropped to scale * (h, w); fp32
    "swinir": Protocol("JingyunLiang/SwinIR main_test_swinir.py", prefer=("params", "params_ema", "state_dict"),
                       pad_mode="swinir_official"),
    # BasicSR options/test/ESRGAN/test_RRDBNet_PSNR_x4.yml: strict_load_g true, no param_key_g, so
    # SRModel's default 'params' (BaseModel.load_network falls back to 'params' only from 'params_ema');
    # the original ESRGAN test.py loads a raw state dict strictly; SRModel.test pads nothing; fp32
    "rrdb": Protocol("XPixelGroup/BasicSR options/test/ESRGAN/test_RRDBNet_PSNR_x4.yml, models/sr_model.py",
                     prefer=("params", "params_ema", "state_dict")),
    # kkkls/FFTformer test.py: torch.load of a raw state dict, load_state_dict(strict=True); reflect-pad
    # to a multiple of 32 where needed, crop to (h, w) (our PaddedFFTformer does the same inside); fp32
    "fftformer": Protocol("kkkls/FFTformer test.py", pad_mode="reflect", pad_multiple=32),
    # Algolzw/BSRT code/synthetic/bsrt: model/__init__.py Model.load -> load_state_dict(strict=True) of the
    # raw file; model/bsrt.py decorates BSRT.forward with torch.cuda.amp.autocast() (fp16 on CUDA, whatever
    # --precision says); test_synburst.py pads nothing and casts the output with .float()
    "bsrt": Protocol("Algolzw/BSRT code/synthetic/bsrt/model/bsrt.py (@autocast forward), model/__init__.py",
                     precision="fp16"),
    # Zj-BinXia/DiffIR DiffIR-SRGAN/options/test_DiffIRS2_GAN_x4.yml and DiffIR-demotionblur/options/
    # test_DiffIRS2.yml (also the RealSR ones): param_key_g params_ema, strict_load_g False: BasicSR's
    # load_network logs the keys that differ and loads the rest.  Unexpected keys are listed and dropped as
    # there; a missing key stays an error: the official run would leave that layer at its random
    # initialisation, which no published number comes from; fp32
    "diffir_s1": Protocol("Zj-BinXia/DiffIR options/test_DiffIRS2_GAN_x4.yml (strict_load_g: False)",
                          prefer=("params_ema", "params"), unexpected="warn"),
    "diffir_s2": Protocol("Zj-BinXia/DiffIR options/test_DiffIRS2_GAN_x4.yml (strict_load_g: False)",
                          prefer=("params_ema", "params"), unexpected="warn"),
    # LeiaLi/SRDiff utils/utils.py load_checkpoint: state_dict['model'], load_state_dict (strict); the
    # residual's reference is utils/dataset.py's img_lr_up = imresize(img_lr / 256, sr_scale): MATLAB
    # bicubic (a = -0.5) of the uint8 LR divided by 256, not 255 (baselines.srdiff.sampler.lr_reference); fp32
    "srdiff": Protocol("LeiaLi/SRDiff utils/utils.py load_checkpoint, utils/dataset.py img_lr_up",
                       extra={"residual_reference": "official"}),
}
#: NAFNet, our own architectures and anything else: strict, the EMA copy first (BasicSR's test options)
DEFAULT_PROTOCOL = Protocol("BasicSR test options (param_key_g params_ema where an EMA copy exists; strict_load_g true)")


def protocol(arch: str) -> Protocol:
    return PROTOCOLS.get(arch, DEFAULT_PROTOCOL)


def read_official_file(path: Path, prefer: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict of an official file under the protocol's key preference, and the key it was under
    (None: a raw state dict)."""
    if not path.exists():
        raise DpirError(f"checkpoint {path} does not exist; fetch it with `dpir fetch` or fix the path in the config")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises several types for files that are not checkpoints
        raise DpirError(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); re-download it") from None
    return select_params(obj, prefer, str(path))


def _recomputed_buffers(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swin-style ``attn_mask`` / ``relative_position_index`` buffers: official files may carry them (or
    not) while ours are recomputed at construction, so the file's are dropped and ours filled in."""
    own = model.state_dict()
    recomputed = ("attn_mask", "relative_position_index")
    out = {k: v for k, v in state.items() if k in own or not k.endswith(recomputed)}
    out.update({k: v for k, v in own.items() if k not in out and k.endswith(recomputed)})
    return out


# --------------------------------------------------------------------------------------------

def check_single_checkpoint(path: Path, where: str = "official") -> None:
    """Refuse a zip archive of several files (a release bundle) with the names inside.  A torch
    checkpoint is a zip too, but one that holds ``<name>/data.pkl``."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any(n.endswith("data.pkl") for n in names):
        return
    ckpts = [n for n in names if n.endswith((".pth", ".pt", ".ckpt", ".safetensors"))]
    shown = ", ".join((ckpts or names)[:8]) + (" ..." if len(ckpts or names) > 8 else "")
    raise DpirError(f"{path} is a zip archive of {len(names)} files ({shown}), not one checkpoint: unpack it "
                    f"and set config key {where!r} to the path of the checkpoint for this network")


def load_official_network(arch: str, kwargs: dict[str, Any], path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``arch`` and load the official file; returns the model and the complete constructor
    kwargs to store (for SRDiff the values read off the file are added)."""
    kwargs = dict(kwargs or {})
    if arch == "spandrel":
        return load_spandrel(path, kwargs)[0], {}
    if arch == "srdiff":
        from baselines.srdiff.checkpoint import (
            SCHEDULE_BUFFERS,
            infer_kwargs,
            load_official,
            read_official,
        )

        state = dict(read_official(path))
        betas = state.get("betas")
        inferred = infer_kwargs({k: v for k, v in state.items() if k not in SCHEDULE_BUFFERS})
        if betas is not None:
            inferred["T"] = int(betas.numel())
        full = {**inferred, **kwargs}
        # the reference is recorded in official_inference (import_official), the kwargs stay the architecture's
        return load_official(path, **full), full
    rule = protocol(arch)
    if arch in ("diffir_s1", "diffir_s2"):
        from baselines.diffir.checkpoint import load_official

        return load_official(path, arch.removeprefix("diffir_"), "cpu", prefer=rule.prefer,
                             on_unexpected=rule.unexpected, on_missing=rule.missing, **kwargs), kwargs
    from dpir.nets import build_network

    model = build_network(arch, **kwargs)
    state, _ = read_official_file(path, rule.prefer)
    if arch == "rrdb":
        state = rrdb_to_sequential(state)
    load_state(model, _recomputed_buffers(model, state), str(path), unexpected=rule.unexpected, missing=rule.missing)
    return model, kwargs


def load_spandrel(path: Path, kwargs: dict, where: str = "official"):
    """``(module, ForeignNet)`` of a checkpoint of architecture ``spandrel``: detected, never configured."""
    from dpir.nets.foreign import load_foreign

    if kwargs:
        key = where.rsplit(".", 1)[0] + ".kwargs" if "." in where else "kwargs"
        raise DpirError(f"config key {key!r}: architecture 'spandrel' reads its "
                        f"hyperparameters off the checkpoint; remove `kwargs` (or name the architecture instead)")
    foreign = load_foreign(path, where)
    foreign.check_rgb(where)
    return foreign.module, foreign


def import_official(config: dict, network: str) -> Path:
    """Resolve, load and save the official weights of ``network``; returns the saved model file."""
    from dpir.fetch.download import sha256_file

    net_cfg = network_config(config, network)
    spec = net_cfg.get("official")
    if not spec:
        raise DpirError(f"network {network!r} has no `official:` key in the config: it is trained with "
                        f"`dpir train --network {network}`, not imported")
    path, source = resolve_official(str(spec), f"networks.{network}.official")
    check_single_checkpoint(path, f"networks.{network}.official")
    sha = sha256_file(path)
    arch, cfg_kwargs = net_cfg["arch"], dict(net_cfg.get("kwargs") or {})
    out_dir = paths.network_dir(config, network)
    before = file_stamp(out_dir / META_FILE)
    with exclusive_lock(out_dir, f"`dpir import-official --network {network}`") as waited:
        if waited and file_stamp(out_dir / META_FILE) != before and _imported(out_dir, arch, cfg_kwargs, source, sha):
            log.info("%s was imported by another process while this one waited: reusing %s", network, out_dir)
            return paths.network_file(config, network)
        extra: dict[str, Any] = {}
        if arch == "spandrel":    # what spandrel detected is recorded with the weights
            model, foreign = load_spandrel(path, cfg_kwargs, f"networks.{network}.official")
            kwargs, extra["foreign"] = {}, foreign.facts()
        else:
            model, kwargs = load_official_network(arch, cfg_kwargs, path)
            extra["official_inference"] = protocol(arch).inference(model)
            if arch == "srdiff" and "reference" in kwargs:    # the config chose SRDiff's reference itself
                extra["official_inference"].pop("residual_reference", None)
        # the old model.json goes first: a crash while saving never leaves new weights under old metadata
        (out_dir / META_FILE).unlink(missing_ok=True)
        save_network(model, out_dir, arch, kwargs, official_source=source, official_path=str(path),
                     official_sha256=sha, network=network, **extra)
        # a train_log.json of an earlier, trained network of the same name would be reported as this one's
        (out_dir / "train_log.json").unlink(missing_ok=True)
    return paths.network_file(config, network)


def _imported(out_dir: Path, arch: str, kwargs: dict, source: str, sha: str) -> bool:
    """Whether ``out_dir`` holds ``arch`` imported from the file ``source`` with SHA-256 ``sha`` and the
    config's ``kwargs`` (the saved kwargs may add values read off the file, as for SRDiff)."""
    try:
        meta = read_meta(out_dir)
    except DpirError:
        return False
    saved = meta.get("kwargs") if isinstance(meta.get("kwargs"), dict) else {}
    return (meta.get("arch") == arch and meta.get("official_source") == source and meta.get("official_sha256") == sha
            and {**saved, **kwargs} == saved and (out_dir / MODEL_FILE).is_file())
