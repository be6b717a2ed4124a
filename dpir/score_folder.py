"""``dpir score-folder``: score a folder of restored images against a folder of targets, no config.

The harness's metric presets, with their pinned conventions (Y = BT.601 studio-range luma, 0-255 scale,
MATLAB-style SSIM, ...; :mod:`dpir.metrics`), applied to any two folders::

    dpir score-folder --pred restored/ --gt gt/ --preset psnr_y --preset ssim_y --crop 4 --out scores.json

Files are paired by stem (``0801.png`` with ``0801.png``, or ``0801.tif``); any file without a partner
and any pair of different sizes is one line naming up to five of them.  Images are read as the harness
reads its own (:func:`dpir.data.images.read_image`: grayscale replicated, alpha dropped, 16-bit scaled)
and scored at their 8-bit levels, like ``dpir score``.  A preset that cannot run here (weights not
cached) is one line with the command that fixes it.  The result -- presets, conventions, crop,
per-image scores, means over the finite values, provenance -- is a dict, written as JSON with ``out``.
"""
from __future__ import annotations

import json
from pathlib import Path

from dpir.errors import DpirError

DEFAULT_PRESETS = ("psnr_rgb", "ssim_rgb")
FORMAT = "dpir-score-folder/1"
SHOW = 5


def _names(items: list[str]) -> str:
    return ", ".join(items[:SHOW]) + (f" +{len(items) - SHOW} more" if len(items) > SHOW else "")


def split_presets(given) -> list[str]:
    """``["psnr_y", "ssim_y,lpips_alex"]`` -> the preset names in order, once each (default: PSNR/SSIM RGB)."""
    names = [p.strip() for item in (given or []) for p in str(item).split(",") if p.strip()]
    return list(dict.fromkeys(names)) or list(DEFAULT_PRESETS)


def pair_files(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """``(stem, pred file, gt file)`` for every stem of both folders; unpaired files are one line."""
    from dpir.data.images import IMAGE_SUFFIXES

    def stems(folder: Path, what: str) -> dict[str, Path]:
        if not folder.is_dir():
            raise DpirError(f"--{what} {folder} is not a folder; give the folder that holds the images")
        out: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                out.setdefault(p.stem, []).append(p)
        twice = sorted(s for s, ps in out.items() if len(ps) > 1)
        if twice:
            raise DpirError(f"--{what} {folder} holds more than one image for {len(twice)} stem(s): "
                            f"{_names([', '.join(p.name for p in out[s]) for s in twice])}; keep one file per image")
        if not out:
            raise DpirError(f"--{what} {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return {s: ps[0] for s, ps in out.items()}

    p, g = stems(pred, "pred"), stems(gt, "gt")
    problems = []
    missing = sorted(set(g) - set(p))
    extra = sorted(set(p) - set(g))
    if missing:
        problems.append(f"{len(missing)} target(s) without a restored image in {pred}: "
                        f"{_names([g[s].name for s in missing])}")
    if extra:
        problems.append(f"{len(extra)} restored image(s) without a target in {gt}: "
                        f"{_names([p[s].name for s in extra])}")
    if problems:
        raise DpirError("the folders do not pair up by file name (stem): " + "; ".join(problems))
    return [(s, p[s], g[s]) for s in sorted(g)]


def _size(path: Path) -> str:
    """``"WxH"`` from the file's header (no decoding); an unreadable file is read (and refused) later."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return f"{im.width}x{im.height}"
    except Exception:
        from dpir.data.images import read_image

        read_image(path)        # raises the harness's one-line error naming the file
        raise


def score_folder(pred, gt, presets=None, crop: int = 0, out_json=None) -> dict:
    """Score every image of ``pred`` against its namesake in ``gt`` with the metric ``presets``."""
    import torch

    from dpir.data.images import read_image
    from dpir.errors import MetricUnavailable
    from dpir.metrics import get_metric
    from dpir.provenance import provenance
    from dpir.results import MetricScore

    pred, gt = Path(pred), Path(gt)
    names = split_presets(presets)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise DpirError(f"--crop must be a whole number >= 0 (pixels cut from each border), got {crop!r}")
    metrics = []
    for name in names:
        m = get_metric(name, crop_border=crop)
        try:
            m.check_available()
        except MetricUnavailable as e:
            raise DpirError(f"metric preset {name!r} cannot run here: {e.reason} Fix: {e.fix}") from None
        metrics.append(m)
    pairs = pair_files(pred, gt)
    wrong = [f"{a.name} {_size(a)} vs {_size(b)}" for _, a, b in pairs if _size(a) != _size(b)]
    if wrong:
        raise DpirError(f"{len(wrong)} restored image(s) in {pred} differ in size (width x height) from their target "
                        f"in {gt}: {_names(wrong)}")
    scores: dict[str, dict[str, float]] = {m.name: {} for m in metrics}
    with torch.no_grad():
        for stem, a, b in pairs:           # one pair in memory at a time
            x, y = read_image(a)[None], read_image(b)[None]
            for m in metrics:
                scores[m.name][stem] = float(m(x, y)[0])
    record = {
        "format": FORMAT,
        "pred": str(pred.resolve()), "gt": str(gt.resolve()),
        "presets": names, "crop_border": crop,
        "conventions": {m.name: m.convention for m in metrics},
        "n_images": len(pairs), "images": [s for s, _, _ in pairs],
        "metrics": {m.name: MetricScore.scored(bool(m.lower_better), m.convention, scores[m.name]).to_dict()
                    for m in metrics},
        "means": {},
        "provenance": provenance(torch.device("cpu")),
    }
    record["means"] = {k: v["mean"] for k, v in record["metrics"].items()}
    if out_json is not None:
        from dpir.atomic import atomic_write_text

        atomic_write_text(Path(out_json), json.dumps(record, indent=2))
    return record


def format_table(record: dict, per_image: bool = False) -> str:
    """The scores as a Markdown table: one row per image (``per_image``), then the mean; the digits each
    preset declares."""
    from dpir.metrics import display_digits, lower_is_better

    names = record["presets"]
    head = ["image", *[f"{n} {'↓' if lower_is_better(n) else '↑'}" for n in names]]

    def cell(v, n):
        return "inf" if v == float("inf") else f"{v:.{display_digits(n)}f}"

    rows = []
    if per_image:
        rows += [[s, *[cell(record["metrics"][n]["per_image"][s], n) for n in names]] for s in record["images"]]
    rows.append([f"mean ({record['n_images']} images)", *[cell(record["means"][n], n) for n in names]])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"   # noqa: E731
    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)]
    lines.append(f"crop {record['crop_border']} px; " + "; ".join(f"{n}: {record['conventions'][n]}" for n in names))
    return "\n".join(lines)
