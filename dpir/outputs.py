"""Method kind ``outputs``: a folder of images restored elsewhere (any code, any framework), imported.

A config row of this kind is never built; ``dpir restore`` imports its folder::

    lanczos:
      kind: outputs
      label: "Lanczos (OpenCV)"
      path: "{out}/byo/lanczos/{task}/{dataset}"     # {out}, {task}, {dataset} are filled in
      make: "python examples/byo/lanczos_folder.py --lq {lq} --out {path} --scale 4"   # the workflow's
      nfe: 1            # optional, declared (not measured): shown marked "(declared)", else n/a
      params: 0
      tflops: 0.0       # per restored image of this test set

The folder holds one image per test image of the prepared manifest, named ``<image id>.png``.  Lossless
files are accepted too (``.tif``, ``.tiff``, ``.bmp``, ``.ppm``); lossy ones (``.jpg``, ``.jpeg``,
``.webp``) are refused, since their compression would be scored as the method's error.  Each image
must be RGB (3 channels, 8- or 16-bit) and of its ground truth's size.  Every problem -- missing,
extra, duplicate, lossy, unreadable, wrong channel count, wrong size -- is collected and reported in
one line naming up to five images per problem and the folder.

The images are written where ``dpir restore`` writes a run (:func:`dpir.paths.restored_dir`), as the
PNGs a restore would write (``png_bits``), with a :class:`dpir.results.RunRecord` ``run.json``, and
swapped in atomically under the run's lock, as :func:`dpir.restore._publish` does; so ``dpir score``,
the tables and the report treat the row like any other.  The record's cost is the declared one
(``nfe``; ``flops_per_image`` = ``tflops`` x 1e12; ``params_total`` = ``params_trained`` = ``params``,
0 when not declared), nothing timed; the tables read the declared values from the row's
``method_config`` (:func:`dpir.results.declared_cost`) and mark them.  ``provenance.imported_from``
records the folder and a digest of its files; an import of unchanged files is not repeated.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from dpir import paths
from dpir.errors import DpirError
from dpir.workflow_facts import expand_path

log = logging.getLogger(__name__)

#: lossless image files an outputs folder may hold (PNG is the norm)
ACCEPTED = (".png", ".tif", ".tiff", ".bmp", ".ppm")
#: lossy formats: their compression artefacts would be scored as the method's own
LOSSY = (".jpg", ".jpeg", ".webp")
#: how many names a problem lists before "+N more"
SHOW = 5
IMAGE_SEED_RULE = "none: the images were restored outside the harness and imported (kind outputs)"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOW])
    return shown + (f" +{len(items) - SHOW} more" if len(items) > SHOW else "")


def output_folder(config: dict, task: str, dataset: str, method_cfg: dict) -> Path:
    """The folder an outputs row imports (its ``path``, placeholders filled)."""
    return Path(expand_path(config, method_cfg["path"], task=task, dataset=dataset))


def _header(path: Path) -> tuple[tuple[int, int], int, str]:
    """((H, W), channels, mode) from the file's header; OSError-like failures propagate."""
    from PIL import Image

    with Image.open(path) as im:
        return (im.height, im.width), len(im.getbands()), im.mode


def scan(folder: Path, ids: list[str], gt_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """``{id: file}`` for the images of ``folder`` and every problem found (empty when it is importable)."""
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if p.suffix.lower() in ACCEPTED + LOSSY:
            by_stem.setdefault(p.stem, []).append(p)
    wanted = set(ids)
    missing = [i for i in ids if i not in by_stem]
    extra = sorted(p.name for stem, ps in by_stem.items() if stem not in wanted for p in ps)
    twice = sorted(stem for stem, ps in by_stem.items() if stem in wanted and len(ps) > 1)
    lossy = sorted(ps[0].name for stem, ps in by_stem.items() if stem in wanted and len(ps) == 1
                   and ps[0].suffix.lower() in LOSSY)
    files = {i: by_stem[i][0] for i in ids if len(by_stem.get(i, ())) == 1 and by_stem[i][0].suffix.lower() in ACCEPTED}
    unreadable, channels, sizes = [], [], []
    for image_id, f in files.items():
        try:
            size, n_channels, mode = _header(f)
        except Exception as e:       # Pillow raises many types for a broken file
            unreadable.append(f"{f.name} ({type(e).__name__})")
            continue
        if n_channels != 3:
            channels.append(f"{f.name} ({mode}, {n_channels})")
            continue
        try:
            gt_size = _header(gt_dir / f"{image_id}.png")[0]
        except Exception:
            raise DpirError(f"the ground truth {gt_dir / (image_id + '.png')} cannot be read; prepare the dataset "
                            f"again (`dpir prepare`)") from None
        if size != gt_size:
            sizes.append(f"{f.name} ({size[1]}x{size[0]}, expected {gt_size[1]}x{gt_size[0]})")
    problems = []
    for items, what in ((missing, "missing (no <id>.png)"), (extra, "extra (not a test image of the manifest)"),
                        (twice, "more than one file for one image"),
                        (lossy, f"lossy format ({'/'.join(LOSSY)}; save as PNG)"),
                        (unreadable, "unreadable"), (channels, "not RGB (mode, channels; 3 needed)"),
                        (sizes, "wrong size (width x height)")):
        if items:
            problems.append(f"{len(items)} {what}: {_names(items)}")
    return files, problems


def _digest(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for image_id in sorted(files):
        h.update(image_id.encode() + b"\0" + hashlib.sha256(files[image_id].read_bytes()).digest())
    return h.hexdigest()


def import_outputs(config: dict, task: str, dataset: str, method: str, seed: int = 0) -> dict:
    """Import the outputs row ``method``'s folder as the restored run (task, dataset, method, seed)."""
    import torch

    from dpir.atomic import atomic_write_text, exclusive_lock, recover, swap_in, unique_temp_dir
    from dpir.config import config_hash, method_config, task_config
    from dpir.data.images import read_image, write_png
    from dpir.data.prepare import read_manifest
    from dpir.measure import peak_rss_mib
    from dpir.provenance import provenance
    from dpir.results import RunRecord

    mcfg = method_config(config, task, method)
    tcfg = task_config(config, task)
    key = f"tasks.{task}.methods.{method}"
    if mcfg.get("kind") != "outputs":
        raise DpirError(f"{key} is of kind {mcfg.get('kind')!r}, not 'outputs': restore it with `dpir restore`")
    if not mcfg.get("path"):
        raise DpirError(f"{key}.path: an outputs row needs `path`, the folder of its restored <image id>.png files")
    declared = {k: mcfg.get(k) for k in ("nfe", "params", "tflops")}
    for k, v in declared.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
                              or (k != "tflops" and not isinstance(v, int))):
            kind = "a number >= 0" if k == "tflops" else "a whole number >= 0"
            raise DpirError(f"{key}.{k}: the declared {k} must be {kind} (or left out for n/a), got {v!r}")
    folder = output_folder(config, task, dataset, mcfg)
    make = f"; make them with its `make` command ({mcfg['make']})" if mcfg.get("make") else ""
    if not folder.is_dir():
        raise DpirError(f"{key}.path: the folder {folder} does not exist{make} or fix `path`")
    man = read_manifest(config, task, dataset)
    ids = list(man["splits"]["test"]["ids"])
    if mcfg.get("max_images"):
        ids = ids[: mcfg["max_images"]]
    if not ids:
        raise DpirError(f"{paths.manifest(config, task, dataset)} lists no test images: nothing to import; run "
                        f"`dpir prepare --task {task} --dataset {dataset}`")
    gt_dir = paths.prepared(config, task, dataset) / "test" / "gt"
    files, problems = scan(folder, ids, gt_dir)
    if problems:
        raise DpirError(f"{key}: the outputs folder {folder} does not match the {len(ids)} test images of "
                        f"{task}/{dataset}: " + "; ".join(problems))
    bits = int(config.get("png_bits", 8))
    digest = _digest(files)
    run_key = config_hash({"method_config_hash": config_hash(mcfg), "task_config_hash": config_hash(tcfg),
                           "seed": seed, "png_bits": bits, "manifest": config_hash(man), "files": digest})
    out_dir = paths.restored_dir(config, task, dataset, method, seed)
    with exclusive_lock(out_dir, f"the restore of {out_dir}"):
        recover(out_dir)
        try:
            old = RunRecord.read(out_dir / "run.json").to_dict()
        except DpirError:
            old = None
        if old and old.get("run_key") == run_key and old.get("images") == ids and \
                all((out_dir / f"{i}.png").is_file() for i in ids):
            log.info("%s is already imported from %s (same files)", out_dir, folder)
            return old
        tmp = unique_temp_dir(out_dir)
        try:
            for image_id in ids:
                # decoded and written as a restore writes its output: RGB float -> png_bits PNG
                write_png(tmp / f"{image_id}.png", read_image(files[image_id]), bits=bits)
            tflops = declared["tflops"]
            record = RunRecord(
                schema=1, task=task, dataset=dataset, method=method, seed=seed, kind="outputs",
                label=mcfg.get("label", method), method_config=mcfg, method_config_hash=config_hash(mcfg),
                task_config_hash=config_hash(tcfg), stochastic=False, images=ids, n_images=len(ids),
                image_seed_rule=IMAGE_SEED_RULE, nfe=declared["nfe"], nfe_groups=None,
                flops_per_image=int(round(tflops * 1e12)) if tflops is not None else None, flops_input_size=None,
                seconds_per_image=None, seconds=[], timing_note=f"not measured: restored outside the harness, "
                                                                f"imported from {folder}",
                nfe_note="declared in the config, not measured" if declared["nfe"] is not None else "not declared",
                params_total=declared["params"] or 0, params_trained=declared["params"] or 0,
                peak_rss_mib=round(peak_rss_mib(), 1), peak_cuda_mib=None, png_bits=bits, shard=None,
                tiled_modules=None, tile=None, run_key=run_key, resumed_images=0,
                provenance=provenance(torch.device("cpu"), seed=seed, imported_from={
                    "path": str(folder), "files_sha256": digest, "make": mcfg.get("make")}),
            )
            atomic_write_text(tmp / "run.json", record.to_json())
            swap_in(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return record.to_dict()


def summary(rec: dict) -> str:
    """One line for ``dpir restore`` after an import."""
    src = (rec.get("provenance") or {}).get("imported_from", {}).get("path", "?")
    return f"imported {rec['n_images']} images of {rec['method']} from {src} (cost as declared: NFE " \
           f"{rec['nfe'] if rec['nfe'] is not None else 'n/a'})"


