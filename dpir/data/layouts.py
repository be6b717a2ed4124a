"""Loaders for the real on-disk layouts of the paper's test sets (as unpacked by ``dpir fetch``).

Each returns a sorted list of plain dataclasses of paths; nothing is decoded until asked, and every
missing counterpart is a :class:`DpirError` naming the file.

    DIV2K        <root>/DIV2K_<split>_HR/0801.png, <root>/DIV2K_<split>_LR_bicubic/X4/0801x4.png
    GoPro        GOPRO_Large: <root>/<split>/<scene>/{blur,sharp}/<frame>.png
                 Restormer:   <root>/test/GoPro/{input,target}/<name>.png
    HIDE         HIDE_dataset: <root>/test/<subset>/<name>.png with <root>/GT/<name>.png
                 Restormer:   <root>/test/HIDE/{input,target}/<name>.png
    SyntheticBurst validation (Bhat et al., "Deep Burst Super-Resolution", CVPR 2021):
                 <root>/bursts/<XXXX>/im_raw_<YY>.png, <root>/gt/<XXXX>/{im_rgb.png, meta_info.pkl}
    Zurich RAW-to-RGB Canon images (Ignatov et al. 2020; the burst training source of Bhat et al.):
                 <root>/<train|test>/canon/<n>.jpg

For GoPro, HIDE, SyntheticBurst and Zurich the root may also be the folder that holds the unpacked
top-level folder (GOPRO_Large, HIDE_dataset, SyntheticBurstVal, zurich-raw-to-rgb or
Zurich-RAW-to-DSLR-Dataset): the loaders step into it.

SyntheticBurst stores 16-bit multi-channel PNGs, which Pillow (and so imageio/skimage) silently
reduces to 8 bits; they are decoded with OpenCV, as the official loader does (:func:`read_png_unchanged`
is its ``cv2.imread(path, cv2.IMREAD_UNCHANGED)``, BGR(A) order; :func:`read_png16` and
:func:`write_png16` are the same codec in the file's RGB(A) order).
"""
from __future__ import annotations

import io
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dpir.data.images import SkippedFile, special_file_kind
from dpir.errors import DpirError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BURST_SCALE = 2.0 ** 14        # SyntheticBurst stores linear values multiplied by 2^14 as uint16


@dataclass(frozen=True)
class Pair:
    """One test image: its id, degraded input (None: the harness regenerates it) and ground truth."""
    id: str
    lq: Path | None
    gt: Path


@dataclass(frozen=True)
class BurstSample:
    """One SyntheticBurst validation burst: RAW frames, linear RGB ground truth and its metadata."""
    id: str
    frames: list[Path]
    gt: Path
    meta: Path


def _regular(p: Path) -> bool:
    """True for a regular file (or a link to one); a named pipe, device or socket is skipped with a
    warning naming it, without being opened (reading a FIFO would block forever)."""
    if p.is_file():
        return True
    special = special_file_kind(p)
    if special is not None and special != "a folder":
        warnings.warn(f"skipping {p}: it is {special}, not a regular file", SkippedFile, stacklevel=3)
    return False


def _missing(f: Path, what: str) -> str:
    special = special_file_kind(f)
    return f"{f} is {special}, not a regular file ({what})" if special else f"{f} is missing ({what})"


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.png")) if _regular(p)}


def _need_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DpirError(f"{what} folder {path} does not exist: {fix}")
    return path


# --------------------------------------------------------------------------------------------
# DIV2K

def div2k_pairs(root: str | Path, split: Literal["train", "valid"] = "valid", scale: int = 4,
                lr: Literal["official", "regenerate"] = "official") -> list[Pair]:
    """DIV2K HR images with the official bicubic LR (``lr="official"``) or none (``"regenerate"``,
    for the harness's MATLAB-compatible bicubic)."""
    root = Path(root)
    if split not in ("train", "valid"):
        raise DpirError(f"DIV2K split must be 'train' or 'valid', not {split!r}")
    if lr not in ("official", "regenerate"):
        raise DpirError(f"DIV2K lr must be 'official' or 'regenerate', not {lr!r}")
    hr_dir = _need_dir(root / f"DIV2K_{split}_HR", "DIV2K HR", f"run `dpir fetch div2k_{split}_hr`")
    hr = _pngs(hr_dir)
    if not hr:
        raise DpirError(f"no PNG images in {hr_dir}: run `dpir fetch div2k_{split}_hr` again")
    if lr == "regenerate":
        return [Pair(k, None, v) for k, v in hr.items()]
    lr_dir = _need_dir(root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}", "DIV2K LR",
                       f"run `dpir fetch div2k_{split}_lr_x{scale}` (or use lr='regenerate')")
    lq = _pngs(lr_dir)
    for k in hr:
        if f"{k}x{scale}" not in lq:
            raise DpirError(f"{lr_dir / f'{k}x{scale}.png'} is missing (the LR counterpart of "
                            f"{hr[k]}): re-extract the DIV2K LR archive")
    for stem, p in lq.items():
        m = re.fullmatch(rf"(.+)x{scale}", stem)
        if not m or m.group(1) not in hr:
            raise DpirError(f"{p} has no HR counterpart in {hr_dir}: re-extract the DIV2K HR archive")
    return [Pair(k, lq[f"{k}x{scale}"], v) for k, v in hr.items()]


# --------------------------------------------------------------------------------------------
# GoPro and HIDE

def _step_into(root: Path, name: str) -> Path:
    return root / name if (root / name).is_dir() else root


def _matched(lq_dir: Path, gt_dir: Path, prefix: str = "") -> list[Pair]:
    lq, gt = _pngs(lq_dir), _pngs(gt_dir)
    for k, p in lq.items():
        if k not in gt:
            raise DpirError(f"{gt_dir / p.name} is missing (the ground truth of {p})")
    for k, p in gt.items():
        if k not in lq:
            raise DpirError(f"{lq_dir / p.name} is missing (the degraded input for {p})")
    return [Pair(prefix + k, lq[k], gt[k]) for k in lq]


def gopro_pairs(root: str | Path, split: Literal["train", "test"] = "test") -> list[Pair]:
    """GoPro blurred/sharp pairs from GOPRO_Large (ids ``<scene>/<frame>``) or the Restormer layout
    (``test/GoPro/{input,target}``, ids ``<name>``)."""
    root = _step_into(Path(root), "GOPRO_Large")
    for base in (root / split / "GoPro", root / "GoPro"):
        if (base / "input").is_dir() and (base / "target").is_dir():
            pairs = _matched(base / "input", base / "target")
            break
    else:
        split_dir = _need_dir(root / split, "GoPro split",
                              f"expected GOPRO_Large/{split}/<scene>/{{blur,sharp}} or "
                              f"{split}/GoPro/{{input,target}}; run `dpir fetch gopro`")
        scenes = sorted(d for d in split_dir.iterdir() if d.is_dir())
        pairs = []
        for scene in scenes:
            blur = _need_dir(scene / "blur", "GoPro blur", f"{scene} is incomplete; re-extract GoPro")
            sharp = _need_dir(scene / "sharp", "GoPro sharp", f"{scene} is incomplete; re-extract GoPro")
            pairs += _matched(blur, sharp, prefix=f"{scene.name}/")
    if not pairs:
        raise DpirError(f"no GoPro image pairs found under {root}")
    return pairs


def hide_pairs(root: str | Path) -> list[Pair]:
    """HIDE test pairs from HIDE_dataset (``test/<subset>/<name>.png`` + ``GT/<name>.png``, ids
    ``<subset>/<name>``) or the Restormer layout (``test/HIDE/{input,target}``)."""
    root = _step_into(Path(root), "HIDE_dataset")
    for base in (root / "test" / "HIDE", root / "HIDE"):
        if (base / "input").is_dir() and (base / "target").is_dir():
            pairs = _matched(base / "input", base / "target")
            break
    else:
        test = _need_dir(root / "test", "HIDE test", "expected HIDE_dataset/test/<subset> and GT/, or "
                         "test/HIDE/{input,target}; run `dpir fetch hide`")
        gt_dir = _need_dir(root / "GT", "HIDE GT", "re-extract HIDE_dataset.zip")
        gt = _pngs(gt_dir)      # GT also holds the training targets: only test images are paired
        pairs = []
        for sub in sorted(d for d in test.iterdir() if d.is_dir()):
            for k, p in _pngs(sub).items():
                if k not in gt:
                    raise DpirError(f"{gt_dir / p.name} is missing (the ground truth of {p})")
                pairs.append(Pair(f"{sub.name}/{k}", p, gt[k]))
    if not pairs:
        raise DpirError(f"no HIDE image pairs found under {root}")
    return pairs


# --------------------------------------------------------------------------------------------
# SyntheticBurst validation

def syntheticburst_val(root: str | Path, burst_size: int = 14) -> list[BurstSample]:
    """The SyntheticBurst validation bursts (first ``burst_size`` frames of each)."""
    root = _step_into(Path(root), "SyntheticBurstVal")
    if not 1 <= burst_size <= 14:
        raise DpirError(f"burst_size must be between 1 and 14, not {burst_size}")
    bursts = _need_dir(root / "bursts", "SyntheticBurst bursts", "run `dpir fetch syntheticburst_val`")
    gt_root = _need_dir(root / "gt", "SyntheticBurst gt", "run `dpir fetch syntheticburst_val`")
    out = []
    for d in sorted(p for p in bursts.iterdir() if p.is_dir()):
        frames = [d / f"im_raw_{i:02d}.png" for i in range(burst_size)]
        for f in frames:
            if not f.is_file():
                raise DpirError(f"{_missing(f, f'frame of burst {d.name}')}; re-extract SyntheticBurstVal")
        gt, meta = gt_root / d.name / "im_rgb.png", gt_root / d.name / "meta_info.pkl"
        for f in (gt, meta):
            if not f.is_file():
                raise DpirError(f"{_missing(f, f'ground truth of burst {d.name}')}; re-extract SyntheticBurstVal")
        out.append(BurstSample(d.name, frames, gt, meta))
    if not out:
        raise DpirError(f"no bursts found in {bursts}")
    return out


# the one reader of bursts in either layout is dpir.data.burst_io.read_burst (it uses the codec below)


def meta_info_to_json(meta: dict[str, Any], source: str | Path = "meta_info") -> dict[str, Any]:
    """The official metadata (torch tensors, numpy arrays and scalars inside) as plain JSON values:
    tensors and arrays become nested lists, 0-d ones and numpy scalars numbers.  Float32 values are
    kept exactly (a Python float holds every float32), so the ISP computes the same sRGB from either."""
    def plain(v: Any, key: str) -> Any:
        if isinstance(v, torch.Tensor):
            return v.detach().cpu().tolist()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, dict):
            return {str(k): plain(x, f"{key}.{k}") for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x, key) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise DpirError(f"{source}: metadata key {key!r} holds a {type(v).__name__}, which has no JSON form")

    return {str(k): plain(v, str(k)) for k, v in meta.items()}


# --------------------------------------------------------------------------------------------
# Zurich RAW-to-RGB (Canon JPGs): sRGB images from which training bursts are synthesised

ZURICH_FOLDERS = ("zurich-raw-to-rgb", "Zurich-RAW-to-DSLR-Dataset")


def _numeric_first(p: Path) -> tuple:
    # 0.jpg .. 46838.jpg: numeric order, so ids follow the official image_list order
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def zurich_raw2rgb(root: str | Path, split: Literal["train", "test"] = "train") -> list[Pair]:
    """The Canon JPGs of one split (``Pair.lq`` is None: the burst is synthesised from ``gt``), in
    numeric order of the file names; ids are the file stems."""
    if split not in ("train", "test"):
        raise DpirError(f"Zurich RAW-to-RGB split must be 'train' or 'test', not {split!r}")
    root = Path(root)
    for name in ZURICH_FOLDERS:
        root = _step_into(root, name)
    canon = _need_dir(root / split / "canon", "Zurich RAW-to-RGB canon",
                      f"expected <root>/{split}/canon/<n>.jpg; run `dpir fetch zurich_raw2rgb`")
    jpgs = sorted((p for p in canon.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and _regular(p)),
                  key=_numeric_first)
    if not jpgs:
        raise DpirError(f"no JPG images in {canon}: re-extract zurich-raw-to-rgb.zip")
    return [Pair(p.stem, None, p) for p in jpgs]


# --------------------------------------------------------------------------------------------
# meta_info.pkl: a trusted dataset file, still read with an allow-list unpickler (plain containers,
# numbers, numpy arrays and torch tensors only), so a tampered file cannot run code.

def _tensor_from_bytes(b: bytes) -> Any:
    # torch pickles a tensor's storage as torch.save bytes; read them with torch's safe loader.
    return torch.load(io.BytesIO(b), weights_only=True)


class _MetaUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_parameter"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    } | {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float",
                                    "complex", "bool", "str", "bytes", "bytearray")}

    def __init__(self, fh: Any, source: Path):
        super().__init__(fh)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _tensor_from_bytes
        if module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None),
                                                                          torch.dtype)):
            return getattr(torch, name)
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DpirError(f"{self.source} refers to {module}.{name}, which a SyntheticBurst meta_info.pkl "
                        f"never contains; the file is not trusted and was not loaded. Re-extract the "
                        f"dataset")


def load_meta_info(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            meta = _MetaUnpickler(fh, path).load()
    except DpirError:
        raise
    except Exception as e:  # noqa: BLE001 -- any unpickling failure means a bad data file, not a bug
        raise DpirError(f"{path} is not a readable meta_info pickle ({type(e).__name__}: {e}); "
                        f"re-extract the dataset") from None
    if not isinstance(meta, dict):
        raise DpirError(f"{path} holds a {type(meta).__name__}, expected a dict of metadata")
    return meta


# --------------------------------------------------------------------------------------------
# 16-bit PNG through OpenCV (Pillow reduces 16-bit colour PNGs to 8 bits)

def read_png_unchanged(path: str | Path) -> np.ndarray:
    """``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` (what the official SyntheticBurst loader calls):
    (H, W) or (H, W, C) uint8/uint16, colour channels in BGR(A) order; an unreadable file is one
    DpirError naming it."""
    import cv2

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DpirError(f"cannot read {path}: {e}") from None
    if not data.startswith(PNG_SIGNATURE):
        raise DpirError(f"{path} is not a PNG file")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)   # our error says it; no WARN lines
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if arr is None:
        raise DpirError(f"{path} is a truncated or corrupt PNG (OpenCV cannot decode it); re-download or "
                        f"re-create it")
    return arr


# cv2 keeps colour PNGs in BGR(A) order, the file holds RGB(A); each index map is its own inverse
_CV2_ORDER = {3: [2, 1, 0], 4: [2, 1, 0, 3]}


def read_png16(path: str | Path) -> np.ndarray:
    """Decode a PNG exactly: (H, W) or (H, W, C) uint8/uint16 in the file's channel order (RGB, RGBA;
    a gray+alpha file comes back as RGBA, as OpenCV expands it)."""
    arr = read_png_unchanged(path)
    return arr[..., _CV2_ORDER[arr.shape[2]]] if arr.ndim == 3 else arr


def write_png16(path: str | Path, arr: np.ndarray) -> None:
    """Encode an (H, W) or (H, W, C) uint8/uint16 array (C = 1, 3 or 4) as PNG, channels in the given
    order (RGB, RGBA), atomically (a temporary name next to ``path``, then a rename)."""
    import cv2

    arr = np.asarray(arr)
    if arr.dtype not in (np.uint8, np.uint16):
        raise DpirError(f"write_png16 needs uint8 or uint16 data, not {arr.dtype} (for {path})")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in _CV2_ORDER):
        raise DpirError(f"write_png16 needs an (H, W) array or 1, 3 or 4 channels, not shape {arr.shape} "
                        f"(for {path}; OpenCV's PNG encoder has no gray+alpha)")
    bgr = arr[..., _CV2_ORDER[arr.shape[2]]] if arr.ndim == 3 else arr
    ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise DpirError(f"OpenCV could not encode {arr.shape} {arr.dtype} data as PNG (for {path})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png.tobytes())
    tmp.replace(path)
