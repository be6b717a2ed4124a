"""Dress rehearsal: miniature stand-ins of every paper-scale download, served as a $DPIR_MIRROR.

The paper configuration (``config/paper.yaml``) reads real archives and release checkpoints that take
hours to download and days to use.  This module writes, for every registry entry that
``config/paper.yaml`` + ``config/rehearsal.yaml`` need (:func:`needed_names`), a miniature file in the
exact official layout, names and file format -- the DIV2K/GoPro/HIDE/SyntheticBurst/Zurich zips with
their top-level folders and file names (SyntheticBurst's 16-bit PNGs and its pickled ``meta_info.pkl``),
release checkpoints with their containers (BasicSR ``params`` / ``params_ema``, raw state dicts, BSRT as
its trainer saves it inside a release zip, the metric weights of torchvision, pyiqa and timm) -- with
random weights of the paper-size architectures and small random images.  The files lie in a mirror tree
``<root>/<host>/<path>`` (Google Drive ids at ``<root>/drive.google.com/<id>``), which is what
:mod:`dpir.fetch.download` asks a mirror for, so the whole chain (``dpir fetch`` -> ``dpir prepare`` /
``dpir import-official`` -> the workflow) runs unchanged, against the committed registry, on a laptop.

The fixtures' bytes are not the releases', so their SHA-256 and sizes are written beside them
(``<root>/registry_overrides.json``, also returned by :func:`build_fixtures`); the test-only setting
$DPIR_REGISTRY_OVERRIDES (:mod:`dpir.fetch.registry`) makes ``dpir fetch`` check those instead.  A real
download never uses it.

Running the rehearsal by hand (two terminals; every download root in a scratch folder, so nothing of a
real cache is touched):

    python -m dpir.rehearsal build /tmp/rehearsal/mirror
    python -m dpir.rehearsal serve /tmp/rehearsal/mirror --port 8765        # keep it running
    export DPIR_MIRROR=http://127.0.0.1:8765
    export DPIR_REGISTRY_OVERRIDES=/tmp/rehearsal/mirror/registry_overrides.json
    export DPIR_DATA=/tmp/rehearsal/dl DPIR_WEIGHTS=/tmp/rehearsal/weights TORCH_HOME=/tmp/rehearsal/torch \\
           HF_HUB_CACHE=/tmp/rehearsal/hf DPIR_REGISTRY_LOCK=/tmp/rehearsal/registry.lock.json
    snakemake --cores 2 --configfile config/paper.yaml config/rehearsal.yaml --keep-going

``serve`` prints the two ``export`` lines for its port.  ``tests/test_rehearsal_fixtures.py`` runs the
data and weights half of this chain (fetch, prepare, import) on every fixture.
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import pickle
import sys
import threading
import zipfile
from collections.abc import Callable, Iterable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from dpir.errors import DpirError
from dpir.workflow_facts import METRIC_WEIGHTS   # metric preset -> the registry entries of its weights

ROOT = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = (ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")
OVERRIDES_FILE = "registry_overrides.json"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)     # fixed member times: the same fixtures give the same bytes

# Miniature sizes (the real ones in the comments).  Every image is at least as large as the crops and
# training patches of config/rehearsal.yaml.
DIV2K_HR = (128, 128)       # (H, W); DIV2K is ~2040 x 1356, LR = HR / 4
DIV2K_VALID_IDS = ("0801", "0802", "0803")
DIV2K_TRAIN_IDS = ("0001", "0002", "0003")
DEBLUR_HW = (96, 128)       # GoPro / HIDE: 720 x 1280
GOPRO_TEST = {"GOPR0384_11_00": ("000001", "000002"), "GOPR0385_11_01": ("003011",)}
GOPRO_TRAIN = {"GOPR0372_07_00": ("000047", "000048"), "GOPR0374_11_00": ("000001",)}
HIDE_TEST = {"test-close-ups": ("1fromGOPR0950", "2fromGOPR0950"), "test-long-shot": ("1fromGOPR1096",)}
HIDE_TRAIN = ("10fromGOPR0967",)
BURST_FRAMES, BURST_HW = 14, (16, 16)   # SyntheticBurst validation: 14 frames of 48 x 48 (gt 384 x 384)
BURST_IDS = ("0000", "0001", "0002")
ZURICH_HW = (192, 192)      # Zurich RAW-to-RGB Canon crops: 448 x 448 (a burst training crop takes patch + 48)
ZURICH_TRAIN, ZURICH_TEST = 4, 2


# ---------------------------------------------------------------------------------------- images

def _image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth random RGB image with some texture (uint8): coarse noise upsampled, plus fine noise."""
    from PIL import Image

    g = np.random.default_rng(seed)
    h, w = shape
    coarse = Image.fromarray(g.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float64)
    return np.clip(smooth + g.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _downscaled(arr: np.ndarray, factor: int) -> np.ndarray:
    from PIL import Image

    h, w = arr.shape[:2]
    return np.asarray(Image.fromarray(arr).resize((w // factor, h // factor), Image.BICUBIC))


def _zip(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """A zip archive of ``members`` (folders implied by the names, as the official archives list them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        dirs: set[str] = set()
        for name, data in members:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i]) + "/"
                if d not in dirs:
                    dirs.add(d)
                    z.writestr(zipfile.ZipInfo(d, _ZIP_TIME), b"")
            z.writestr(zipfile.ZipInfo(name, _ZIP_TIME), data)


# ---------------------------------------------------------------------------------------- datasets

def _div2k_hr(split: str) -> Iterable[tuple[str, np.ndarray]]:
    ids = DIV2K_VALID_IDS if split == "valid" else DIV2K_TRAIN_IDS
    return [(i, _image(DIV2K_HR, 100 + int(i))) for i in ids]


def div2k_hr(path: Path, split: str) -> None:
    """DIV2K_<split>_HR.zip: ``DIV2K_<split>_HR/<id>.png``."""
    _zip(path, ((f"DIV2K_{split}_HR/{i}.png", _png(a)) for i, a in _div2k_hr(split)))


def div2k_lr(path: Path, split: str) -> None:
    """DIV2K_<split>_LR_bicubic_X4.zip: ``DIV2K_<split>_LR_bicubic/X4/<id>x4.png`` (bicubic of the HR)."""
    _zip(path, ((f"DIV2K_{split}_LR_bicubic/X4/{i}x4.png", _png(_downscaled(a, 4))) for i, a in _div2k_hr(split)))


def gopro(path: Path) -> None:
    """GOPRO_Large.zip: ``GOPRO_Large/<train|test>/<scene>/{blur,blur_gamma,sharp}/<frame>.png``."""
    def members():
        seed = 0
        for split, scenes in (("train", GOPRO_TRAIN), ("test", GOPRO_TEST)):
            for scene, frames in scenes.items():
                for f in frames:
                    seed += 1
                    sharp = _image(DEBLUR_HW, 200 + seed)
                    blur = _box_blur(sharp)
                    base = f"GOPRO_Large/{split}/{scene}"
                    yield f"{base}/blur/{f}.png", _png(blur)
                    yield f"{base}/blur_gamma/{f}.png", _png(blur)
                    yield f"{base}/sharp/{f}.png", _png(sharp)
    _zip(path, members())


def _box_blur(arr: np.ndarray, k: int = 5) -> np.ndarray:
    """A horizontal box blur (a stand-in for camera shake)."""
    x = np.pad(arr.astype(np.float64), ((0, 0), (k // 2, k // 2), (0, 0)), mode="edge")
    out = sum(x[:, i:i + arr.shape[1]] for i in range(k)) / k
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def hide(path: Path) -> None:
    """HIDE_dataset.zip: ``HIDE_dataset/test/<subset>/<name>.png``, ``HIDE_dataset/train/<name>.png`` and
    the ground truth of both in ``HIDE_dataset/GT/<name>.png``."""
    def members():
        test = [(f"test/{sub}", n) for sub, names in HIDE_TEST.items() for n in names]
        for seed, (folder, name) in enumerate([*test, *(("train", n) for n in HIDE_TRAIN)], 1):
            sharp = _image(DEBLUR_HW, 300 + seed)
            yield f"HIDE_dataset/{folder}/{name}.png", _png(_box_blur(sharp))
            yield f"HIDE_dataset/GT/{name}.png", _png(sharp)
    _zip(path, members())


def burst_meta(n: int) -> dict[str, Any]:
    """A meta_info dict as the official generator pickled it: torch tensors, numpy and Python scalars."""
    import torch

    rgb2cam = torch.eye(3) * 0.8 + 0.2 / 3 + 0.01 * n
    return {"rgb2cam": rgb2cam, "cam2rgb": torch.linalg.inv(rgb2cam), "rgb_gain": torch.tensor(1.25 + n / 10),
            "red_gain": torch.tensor(2.1 - n / 20), "blue_gain": torch.tensor(1.7 + n / 20),
            "smoothstep": True, "gamma": True,
            "shot_noise_level": torch.tensor(0.002), "read_noise_level": torch.tensor(3e-5)}


def syntheticburst(path: Path) -> None:
    """SyntheticBurstVal.zip: ``SyntheticBurstVal/bursts/<XXXX>/im_raw_<YY>.png`` (16-bit, 4 channels, value
    * 2^14, OpenCV's BGRA file order) and ``SyntheticBurstVal/gt/<XXXX>/{im_rgb.png, meta_info.pkl}``."""
    import cv2

    def png16(arr: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
        if not ok:
            raise DpirError("OpenCV could not encode a 16-bit PNG fixture")
        return buf.tobytes()

    def members():
        h, w = BURST_HW
        for n, bid in enumerate(BURST_IDS):
            g = np.random.default_rng(400 + n)
            gt = _image((8 * h, 8 * w), 400 + n).astype(np.float64) / 255.0
            gt16 = np.round(gt ** 2.2 * 2 ** 14).astype(np.uint16)            # linear RGB, * 2^14
            for i in range(BURST_FRAMES):
                raw = gt16[::8, ::8][:h, :w]                                   # R, G, G, B from the target
                frame = np.stack([raw[..., 0], raw[..., 1], raw[..., 1], raw[..., 2]], -1).astype(np.float64)
                frame = np.clip(frame + g.normal(0, 40, frame.shape), 0, 2 ** 14).astype(np.uint16)
                yield f"SyntheticBurstVal/bursts/{bid}/im_raw_{i:02d}.png", png16(frame[..., [2, 1, 0, 3]])
            yield f"SyntheticBurstVal/gt/{bid}/im_rgb.png", png16(gt16[..., ::-1])
            yield f"SyntheticBurstVal/gt/{bid}/meta_info.pkl", pickle.dumps(burst_meta(n))
    _zip(path, members())


def zurich(path: Path) -> None:
    """zurich-raw-to-rgb.zip: ``zurich-raw-to-rgb/<train|test>/canon/<n>.jpg`` (the Canon sRGB images)."""
    def members():
        for split, count, base in (("train", ZURICH_TRAIN, 500), ("test", ZURICH_TEST, 600)):
            for i in range(count):
                yield f"zurich-raw-to-rgb/{split}/canon/{i}.jpg", _jpg(_image(ZURICH_HW, base + i))
    _zip(path, members())


# ---------------------------------------------------------------------------------------- checkpoints

@functools.cache
def _paper_config() -> dict:
    from dpir.config import load_config

    return load_config(list(PAPER_CONFIGS))


def _network_state(network: str) -> dict:
    """Random weights of a paper network at its paper.yaml architecture (seeded by the name)."""
    import torch

    from dpir.nets import build_network

    cfg = _paper_config()["networks"][network]
    torch.manual_seed(sum(map(ord, network)))
    return build_network(cfg["arch"], **cfg["kwargs"]).state_dict()


def _spandrel_state(arch: str, package: str = "spandrel", **kwargs: Any) -> dict:
    """Random weights of a spandrel (or spandrel_extra_arches) architecture at a release's configuration."""
    import importlib

    import torch

    cls = getattr(importlib.import_module(f"{package}.architectures.{arch}"), arch)
    torch.manual_seed(sum(map(ord, arch)))
    return cls(**kwargs).state_dict()


def _save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def swinir(path: Path) -> None:
    """001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth: ``{'params': state_dict}`` (SwinIR's releases)."""
    _save({"params": _network_state("swinir_sr")}, path)


def rrdb_basicsr(path: Path, key: str = "params", network: str = "rrdb_sr") -> None:
    """A BasicSR RRDBNet file (``conv_first``, ``body.N.rdbM.convK``, ...) under ``key``."""
    from dpir.official import rrdb_from_sequential

    _save({key: rrdb_from_sequential(_network_state(network))}, path)


def fftformer(path: Path) -> None:
    """fftformer_GoPro.pth: the raw state dict (kkkls/FFTformer)."""
    _save(_network_state("fftformer_deblur"), path)


def bsrt_release(path: Path) -> None:
    """The BSRT release: a zip of checkpoints; BSRT-Small for SyntheticBurst is saved as its trainer does
    (``model.module.state_dict()``: no ``module.`` prefix) and without the Swin ``attn_mask`` buffers."""
    import torch

    state = {k: v for k, v in _network_state("bsrt_burst").items() if not k.endswith("attn_mask")}
    buf = io.BytesIO()
    torch.save(state, buf)
    _zip(path, [("BSRT_pretrained/synthetic/bsrt_small.pth", buf.getvalue()),
                ("BSRT_pretrained/README.txt", b"BSRT pretrained models (rehearsal fixture)\n")])


def esrgan(path: Path) -> None:
    """ESRGAN_SRx4_DF2KOST_official-ff704c30.pth: BasicSR RRDBNet (64 filters, 23 blocks), ``params_ema``."""
    rrdb_basicsr(path, "params_ema")


def hat(path: Path) -> None:
    """4x-HAT_SR.pth (HAT-SRx4): ``{'params_ema': state_dict}`` of the official HAT-SRx4 configuration."""
    state = _spandrel_state("HAT", upscale=4, in_chans=3, img_size=64, window_size=16, compress_ratio=3,
                            squeeze_factor=30, conv_scale=0.01, overlap_ratio=0.5, img_range=1.0,
                            depths=[6] * 6, embed_dim=180, num_heads=[6] * 6, mlp_ratio=2,
                            upsampler="pixelshuffle", resi_connection="1conv")
    _save({"params_ema": state}, path)


def nafnet(path: Path) -> None:
    """NAFNet-GoPro-width64.pth: ``{'params': state_dict}``, width 64, 1-1-1-28 encoder blocks."""
    state = _spandrel_state("NAFNet", img_channel=3, width=64, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 28],
                            dec_blk_nums=[1, 1, 1, 1])
    _save({"params": state}, path)


def restormer(path: Path) -> None:
    """motion_deblurring.pth: ``{'params': state_dict}`` of Restormer's default (motion deblurring) network."""
    _save({"params": _spandrel_state("Restormer", "spandrel_extra_arches", inp_channels=3, out_channels=3, dim=48,
                                     num_blocks=[4, 6, 6, 8], num_refinement_blocks=4, heads=[1, 2, 4, 8],
                                     ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias")}, path)


def alexnet(path: Path) -> None:
    """alexnet-owt-7be5be79.pth: torchvision's AlexNet state dict (LPIPS's trunk)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    _save(torchvision.models.alexnet(weights=None).state_dict(), path)


def cfanet(path: Path, pyiqa_name: str = "topiq_nr") -> None:
    """cfanet_nr_koniq_res50-9a73138b.pth: pyiqa's ``{'params': state_dict}`` of CFANet (ResNet-50 inside)."""
    import torch
    from pyiqa.archs.topiq_arch import CFANet
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    opts = dict(DEFAULT_CONFIGS[pyiqa_name]["metric_opts"])
    opts.pop("type")
    torch.manual_seed(1)
    _save({"params": CFANet(**opts, pretrained=False, backbone_pretrain=False).state_dict()}, path)


def timm_resnet50(path: Path) -> None:
    """timm resnet50.a1_in1k model.safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet50", pretrained=False).state_dict().items()},
              str(path))


#: registry name -> the function that writes its fixture file
BUILDERS: dict[str, Callable[[Path], None]] = {
    "div2k_valid_hr": functools.partial(div2k_hr, split="valid"),
    "div2k_valid_lr_x4": functools.partial(div2k_lr, split="valid"),
    "div2k_train_hr": functools.partial(div2k_hr, split="train"),
    "div2k_train_lr_x4": functools.partial(div2k_lr, split="train"),
    "gopro": gopro,
    "hide": hide,
    "syntheticburst_val": syntheticburst,
    "zurich_raw2rgb": zurich,
    "swinir_classical_x4": swinir,
    "rrdb_psnr_x4": rrdb_basicsr,
    "fftformer_gopro": fftformer,
    "bsrt_weights": bsrt_release,
    "esrgan_x4": esrgan,
    "hat_srx4": hat,
    "nafnet_gopro_width64": nafnet,
    "restormer_motion_deblurring": restormer,
    "lpips_alexnet": alexnet,
    "topiq_nr_koniq": cfanet,
    "timm_resnet50": timm_resnet50,
}

#: test-set and training images each fixture dataset gives (the test's expected manifest counts)
COUNTS: dict[str, dict[str, int]] = {
    "div2k": {"test": len(DIV2K_VALID_IDS), "train": len(DIV2K_TRAIN_IDS)},
    "gopro": {"test": sum(map(len, GOPRO_TEST.values())), "train": sum(map(len, GOPRO_TRAIN.values()))},
    "hide": {"test": sum(map(len, HIDE_TEST.values())), "train": 0},
    "syntheticburst": {"test": len(BURST_IDS), "train": 0},
    "zurich": {"test": 0, "train": ZURICH_TRAIN},
}



# ---------------------------------------------------------------------------------------- what is needed

def _dataset_names(ds: dict, task: dict) -> list[str]:
    kind = ds["kind"]
    if kind == "div2k":
        scale = int(task.get("scale") or 4)
        lr = ds.get("lr", "regenerate") == "official"
        return [f"div2k_{s}_{part}" for s in (ds.get("split", "valid"), "train")
                for part in ("hr", *((f"lr_x{scale}",) if lr else ()))]
    return {"gopro": ["gopro"], "hide": ["hide"], "syntheticburst": ["syntheticburst_val"],
            "zurich": ["zurich_raw2rgb"]}.get(kind, [])


def needed_names(config: dict) -> list[str]:
    """The registry entries a run of ``config`` downloads: the datasets of its enabled tasks (test and
    training sets without a ``path``), the ``official:`` weights of its networks, the ``checkpoint`` rows
    that name a registry entry, and the weights of its metric presets."""
    from dpir import fetch
    from dpir.workflow_facts import all_methods, enabled_tasks

    registry = set(fetch.list_names())
    names: list[str] = []
    for t in enabled_tasks(config):
        task = config["tasks"][t]
        datasets = [*task["test_datasets"], *([task["train_dataset"]] if task.get("train_dataset") else [])]
        for d in datasets:
            ds = config["datasets"][d]
            if not ds.get("path"):
                names += _dataset_names(ds, task)
        for m in all_methods(config, t).values():
            if m.get("kind") == "checkpoint" and m.get("path") in registry:
                names.append(m["path"])
        for metric in task.get("metrics") or []:
            names += METRIC_WEIGHTS.get(metric, ())
    for net in config["networks"].values():
        if net.get("official") in registry:
            names.append(net["official"])
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------- build and serve

def fixture_path(root: Path, name: str) -> Path:
    """Where the mirror tree ``root`` holds the fixture of registry entry ``name``: the first source that
    ``dpir fetch`` asks a mirror for (the Google Drive id, else the first URL)."""
    from dpir.fetch import download, registry

    e = registry.entries()[name]
    rel = download.gdrive_mirror_url("", e.gdrive_id) if e.gdrive_id else download.mirror_url("", e.urls[0])
    return root / rel.lstrip("/")


def build_fixtures(root: str | Path, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Write the fixture of every registry entry in ``names`` (default: all of :data:`BUILDERS`) into the
    mirror tree ``root`` and return ``{name: {"sha256", "size"}}``, also written to
    ``<root>/registry_overrides.json`` (the file $DPIR_REGISTRY_OVERRIDES names; entries of fixtures built
    there before are kept)."""
    from dpir.fetch.download import sha256_file

    root = Path(root)
    names = list(BUILDERS if names is None else names)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise DpirError(f"no rehearsal fixture for {', '.join(unknown)}; fixtures exist for {', '.join(BUILDERS)}")
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        path = fixture_path(root, name)
        BUILDERS[name](path)
        table[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    root.mkdir(parents=True, exist_ok=True)
    known = root / OVERRIDES_FILE        # fixtures built earlier into this tree keep their entries
    old = json.loads(known.read_text()) if known.is_file() else {}
    known.write_text(json.dumps({**old, **table}, indent=1, sort_keys=True) + "\n")
    return table


def serve(root: str | Path, port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve the folder ``root`` over HTTP on 127.0.0.1 (``port`` 0: any free one) from a daemon thread;
    returns the base URL (the value for $DPIR_MIRROR) and a function that stops the server."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    root = Path(root)
    if not root.is_dir():
        raise DpirError(f"mirror folder {root} does not exist: run `python -m dpir.rehearsal build {root}` first")
    httpd = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{httpd.server_address[1]}", stop


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dpir.rehearsal", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the fixture mirror tree and registry_overrides.json into DIR")
    b.add_argument("dir")
    b.add_argument("--only", nargs="*", metavar="NAME", help="registry names (default: every fixture)")
    s = sub.add_parser("serve", help="serve DIR on 127.0.0.1 until interrupted")
    s.add_argument("dir")
    s.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.command == "build":
            table = build_fixtures(args.dir, args.only or None)
            print(f"{len(table)} fixtures in {args.dir}; hashes in {Path(args.dir) / OVERRIDES_FILE}")
            return 0
        url, stop = serve(args.dir, args.port)
        print(f"serving {args.dir} at {url}; in the shell of the run:\n"
              f"  export DPIR_MIRROR={url}\n"
              f"  export DPIR_REGISTRY_OVERRIDES={Path(args.dir).resolve() / OVERRIDES_FILE}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            stop()
        return 0
    except DpirError as e:
        print(f"dpir.rehearsal: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
