"""Reading and writing images, with one clear policy for odd files.

Policy (each case is tested): a file that is not an image, or a truncated/corrupt one, is skipped
with a warning naming it (:class:`SkippedFile`); so is anything that is not a regular file (a named
pipe, a device, a socket: it is never opened, a FIFO would block the read forever) and an image whose
header declares more pixels than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
checked before any pixel is decoded); grayscale is converted to RGB by replication;
RGBA is converted by dropping alpha; 16-bit images are scaled by 65535; everything comes back as
float32 ``(3, H, W)`` in [0, 1].  PNGs are written atomically (temporary name, then rename).
"""
from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dpir.errors import DpirError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


class SkippedFile(UserWarning):
    pass


class ImageTooSmall(DpirError):
    """An image below the size a preparation step needs (a blur kernel, a burst's margin): prepare skips
    that image with a :class:`SkippedFile` warning and records it, instead of stopping."""


def to_rgb_float(arr: np.ndarray, source: str = "<array>") -> tuple[np.ndarray, list[str]]:
    """Any HxW, HxWx1/2/3/4 uint8/uint16/bool/float array -> float32 HxWx3 in [0,1], plus notes."""
    notes: list[str] = []
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max() > 255):
        arr = arr.astype(np.float32) / 65535.0
        notes.append("16-bit, scaled by 1/65535")
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.float32) / 255.0
    else:
        arr = np.clip(arr.astype(np.float32), 0.0, 1.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise DpirError(f"{source}: unsupported image shape {arr.shape}")
    c = arr.shape[2]
    if c in (2, 4):  # gray+alpha / RGBA: drop alpha
        arr = arr[..., : c - 1]
        notes.append("alpha channel dropped")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
        notes.append("grayscale, replicated to RGB")
    if arr.shape[2] != 3:
        raise DpirError(f"{source}: unsupported number of channels {c}")
    return np.ascontiguousarray(arr), notes


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(25)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 25:
        return head[24]
    return None


def special_file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is neither a regular file nor a symlink to one (``"a named pipe
    (FIFO)"``, ...), without opening it; None for a regular file or a path that does not exist."""
    try:
        mode = os.stat(path).st_mode        # follows symlinks: a link to a regular file is fine
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "a special file"


def _open_regular(path: Path):
    """Open ``path`` for binary reading only if it is a regular file (or a symlink to one).

    The type is checked twice: with ``stat`` before opening (a device is never opened at all) and with
    ``fstat`` on the descriptor, opened non-blocking, so a file swapped for a named pipe in between
    cannot block the read either."""
    special = special_file_kind(path)
    if special is None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return os.fdopen(fd, "rb")
        os.close(fd)
        special = "a special file"
    raise DpirError(f"cannot read image {path}: it is {special}, not a regular file; replace or remove it")


def _bomb_message(path: Path, e: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    return (f"cannot read image {path}: its header declares more pixels than Pillow's decompression-bomb "
            f"limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS) allows ({e}); replace or remove the file, or raise "
            f"PIL.Image.MAX_IMAGE_PIXELS if the image is genuine")


def read_image(path: str | os.PathLike, notes: list[str] | None = None) -> torch.Tensor:
    """Read an image file as float32 (3, H, W) in [0, 1]; raise DpirError naming the file if unreadable.

    Conversions (grayscale, alpha, 16-bit) are appended to ``notes`` when given.  Pillow validates
    the file (it detects truncation); 16-bit colour PNGs are decoded with OpenCV because Pillow
    reduces them to 8 bits.
    """
    path = Path(path)
    try:
        with _open_regular(path) as fh, warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that and raises above: both are refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.array(im).astype(np.uint16)
                elif im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
                    arr = np.array(im.convert("RGB"))
                else:
                    arr = np.array(im)
                if im.format == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
                    import cv2

                    deep = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                    if deep is None:
                        raise OSError("OpenCV could not decode the 16-bit PNG")
                    arr = deep[..., [2, 1, 0, 3][: deep.shape[2]]]
    except FileNotFoundError:
        raise DpirError(f"image {path} does not exist") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DpirError(_bomb_message(path, e)) from None
    except UnidentifiedImageError:      # its own message names the file object, not the path
        raise DpirError(f"cannot read image {path}: Pillow cannot identify it as an image. Replace or remove "
                        f"the file.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DpirError(f"cannot read image {path}: {e}. Replace or remove the file.") from None
    rgb, found = to_rgb_float(arr, str(path))
    if notes is not None:
        notes.extend(found)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder (sorted); other files are skipped with a warning naming them.

    An entry with an image suffix that is not a regular file (a FIFO, device or socket) is kept:
    :func:`read_image` refuses it without opening it, so prepare skips it with a warning and records
    it in the manifest like any other unreadable image."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise DpirError(f"image folder {folder} is not a folder; point the dataset's `path` in the config at "
                            f"the folder that holds the images")
        raise DpirError(f"image folder {folder} does not exist; check the dataset's `path` in the config")
    files = []
    for p in sorted(folder.iterdir()):
        if p.is_dir() or p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        else:
            special = special_file_kind(p)
            what = f"{special}, not an image file" if special else f"not an image file (suffix {p.suffix or 'none'})"
            warnings.warn(f"skipping {p}: {what}", SkippedFile, stacklevel=2)
    return files


def quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round to the ``bits``-bit grid (what writing and re-reading a PNG does), values in [0,1]."""
    q = float(2**bits - 1)
    return torch.round(x.clamp(0, 1) * q) / q


def write_png(path: str | os.PathLike, x: torch.Tensor, bits: int = 8) -> None:
    """Write (3,H,W) float in [0,1] as an 8- or 16-bit RGB PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = x.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    if bits == 8:
        Image.fromarray(np.round(arr * 255).astype(np.uint8), mode="RGB").save(tmp, compress_level=1)
    elif bits == 16:
        import cv2  # Pillow cannot write 16-bit colour PNGs

        if not cv2.imwrite(str(tmp), np.round(arr * 65535).astype(np.uint16)[..., ::-1]):
            raise DpirError(f"could not write {path}")
    else:
        raise ValueError("bits must be 8 or 16")
    os.replace(tmp, path)
