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
reduces to 8 bits; :func:`read_png16` is a small exact PNG decoder (numpy + zlib) for them.
"""
from __future__ import annotations

import io
import pickle
import re
import struct
import warnings
import zlib
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


# cv2 (which wrote and reads the official files) keeps colour PNGs in BGR(A) order; a plain PNG
# decoder sees the file's RGB(A) order.  These index maps turn the file order into the arrays the
# official loader (cv2.IMREAD_UNCHANGED) returns: R,G,G,B for RAW frames, linear R,G,B for gt.
_CV2_ORDER = {3: [2, 1, 0], 4: [2, 1, 0, 3]}


def _read_cv2_order(path: Path, channels: int) -> np.ndarray:
    arr = read_png16(path)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != channels:
        shape = "x".join(map(str, arr.shape))
        raise DpirError(f"{path} is a {shape} {arr.dtype} image; expected {channels} channels of uint16")
    return arr[..., _CV2_ORDER[channels]]


def read_burst(sample: BurstSample) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Decode one burst as the official ``SyntheticBurstVal`` does.

    Returns frames ``(N, 4, h, w)`` float32 (RGGB packed, value / 2^14), gt ``(3, 8h, 8w)`` float32
    linear RGB (value / 2^14) and the metadata dict (with ``burst_name`` added, as upstream).
    """
    frames = []
    for f in sample.frames:
        a = _read_cv2_order(f, 4)
        if frames and a.shape != frames[0].shape:
            raise DpirError(f"{f} is {a.shape[1]}x{a.shape[0]} but {sample.frames[0]} is "
                            f"{frames[0].shape[1]}x{frames[0].shape[0]}: frames of a burst must match")
        frames.append(a)
    gt = _read_cv2_order(sample.gt, 3)
    h, w = frames[0].shape[:2]
    if gt.shape[:2] != (8 * h, 8 * w):
        raise DpirError(f"{sample.gt} is {gt.shape[1]}x{gt.shape[0]}; expected {8 * w}x{8 * h} "
                        f"(8x the {w}x{h} RAW frames: 2x for the RGGB packing times the 4x SR factor)")
    meta = load_meta_info(sample.meta)
    meta["burst_name"] = sample.id
    x = torch.from_numpy(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2) / BURST_SCALE
    y = torch.from_numpy(gt.astype(np.float32)).permute(2, 0, 1) / BURST_SCALE
    return x.contiguous(), y.contiguous(), meta


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
# 16-bit PNG (PNG spec, ISO/IEC 15948): 8/16-bit gray, gray+alpha, RGB, RGBA, not interlaced.

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, path: Path) -> np.ndarray:
    if len(raw) != height * (stride + 1):
        raise DpirError(f"{path}: decompressed image data has {len(raw)} bytes, expected "
                        f"{height * (stride + 1)} (truncated or corrupt PNG)")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(height):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:                                   # None
            cur = line.copy()
        elif ftype == 1:                                 # Sub: running sum per byte lane, mod 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif ftype == 2:                                 # Up
            cur = line + prior
        elif ftype in (3, 4):                            # Average, Paeth: sequential along the row
            cur_b = bytearray(line.tobytes())
            up = prior.tobytes()
            for i in range(stride):
                left = cur_b[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    cur_b[i] = (cur_b[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    ul = up[i - bpp] if i >= bpp else 0
                    p = left + up[i] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else ul)
                    cur_b[i] = (cur_b[i] + pred) & 0xFF
            cur = np.frombuffer(bytes(cur_b), np.uint8)
        else:
            raise DpirError(f"{path}: unknown PNG filter type {ftype} in row {y} (corrupt PNG)")
        out[y] = cur
        prior = cur
    return out


def read_png16(path: str | Path) -> np.ndarray:
    """Decode a PNG exactly: (H, W) or (H, W, C) uint8/uint16 in the file's channel order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DpirError(f"cannot read {path}: {e}") from None
    if not data.startswith(PNG_SIGNATURE):
        raise DpirError(f"{path} is not a PNG file")
    pos, idat, ihdr = 8, [], None
    try:
        while pos < len(data):
            length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                raise ValueError("chunk runs past the end of the file")
            if ctype == b"IHDR":
                ihdr = struct.unpack(">IIBBBBB", body)
            elif ctype == b"IDAT":
                idat.append(body)
            elif ctype == b"IEND":
                break
            pos += 12 + length
        if ihdr is None:
            raise ValueError("no IHDR chunk")
        width, height, depth, color, _, _, interlace = ihdr
        if color not in _CHANNELS or depth not in (8, 16) or interlace:
            raise DpirError(f"{path}: PNG colour type {color}, bit depth {depth}, interlace {interlace} "
                            f"is not supported (8/16-bit gray/RGB/RGBA, non-interlaced only)")
        raw = zlib.decompress(b"".join(idat))
    except (struct.error, ValueError, zlib.error) as e:
        raise DpirError(f"{path} is a truncated or corrupt PNG ({e})") from None
    ch, nbytes = _CHANNELS[color], depth // 8
    flat = _unfilter(raw, height, width * ch * nbytes, ch * nbytes, path)
    arr = flat.view(">u2").astype(np.uint16) if depth == 16 else flat
    arr = arr.reshape(height, width, ch)
    return arr[..., 0] if ch == 1 else arr


def write_png16(path: str | Path, arr: np.ndarray) -> None:
    """Encode an (H, W) or (H, W, C) uint8/uint16 array as PNG, channels in the given order."""
    arr = np.asarray(arr)
    if arr.dtype not in (np.uint8, np.uint16):
        raise DpirError(f"write_png16 needs uint8 or uint16 data, not {arr.dtype} (for {path})")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, ch = arr.shape
    color = {v: k for k, v in _CHANNELS.items()}.get(ch)
    if color is None:
        raise DpirError(f"write_png16 needs 1-4 channels, not {ch} (for {path})")
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8)
    rows = rows.reshape(h, w * ch * depth // 8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()   # filter 0 rows

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
