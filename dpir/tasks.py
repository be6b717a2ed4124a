"""Task kinds: how each task makes its observation, stores it, and feeds training.

=========  =====================================  ======================================  ==========
kind       observation y                          stored next to gt/<id>.png              training lq
=========  =====================================  ======================================  ==========
sr         MATLAB bicubic x``scale`` downscale     lq/<id>.png                              stored pairs
deblur     camera-shake blur + Gaussian noise     lq/<id>.png, kernels/<id>.npy           blurred on the fly
burst      synthetic RAW burst (Bhat et al.)      burst/ (SyntheticBurst layout)          synthesised on the fly
=========  =====================================  ======================================  ==========

Each kind is one object (:data:`TASK_KINDS`, looked up by :func:`task_kind`) that owns everything that
differs between kinds: its degradations, the test observation, how prepare stores an image, the
training degradation, crop margin and scales, and how restore loads the observations.  Callers ask the
object instead of comparing kind strings, so a new kind is one new class here.

The observation of test image ``id`` is drawn from the generator seeded by (data seed, id)
(:mod:`dpir.rng`), so a dataset is regenerated bit for bit.  Training degradations (deblur, burst)
are drawn on the fly from the training loop's data generator: every step sees new kernels/bursts,
which is what the small bundled training set needs.  Datasets that carry their own observations
(GoPro and HIDE blur, DIV2K's official LR) train on their stored pairs instead
(:meth:`TaskKind.train_degradation` with the dataset config).

This module imports neither torch nor numpy at import time (``tests/test_task_kinds.py``): the
torch-free modules (:mod:`dpir.workflow_facts`, the config checks) read :data:`TASK_KINDS` and
:attr:`TaskKind.image_input`; the methods that compute import what they need.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpir.errors import DpirError

if TYPE_CHECKING:
    import torch

DATA_SEED = 20241105  # the seed of every synthetic test observation (arXiv 2411.05993's date)

#: frames are packed RGGB at half the mosaic resolution, so the output is 2 x scale times a frame
BURST_PACKING = 2

#: a loader of one prepared test observation: image id -> (y, extra keyword arguments of ``restore``)
InputLoader = Callable[[str], "tuple[torch.Tensor, dict[str, Any]]"]


class SkipImage(Exception):
    """Raised by :meth:`TaskKind.prepare_image` for a source image that cannot be prepared (too small,
    an unreadable burst): prepare warns, records ``reason`` in the manifest and goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _degradation(task: dict) -> dict:
    d = dict(task.get("degradation") or {})
    d.pop("name", None)
    return d


def _stores_own_observations(dataset: dict | None) -> bool:
    """GoPro's real blurred frames, HIDE's, DIV2K's official LR (``lr: official``): the config says so."""
    ds = dataset or {}
    return ds.get("kind") in ("gopro", "hide") or (ds.get("kind") == "div2k" and ds.get("lr") == "official")


class TaskKind:
    """What one task kind does at each stage; one instance per kind in :data:`TASK_KINDS`."""

    #: the config's ``tasks.<name>.kind``
    name: str = ""
    #: observations are RGB images (``lq/<id>.png``): False for RAW bursts, which have no 1280x720 TFLOPs
    #: row, no stored training lq, and need the burst metadata to restore
    image_input: bool = True
    #: the training target is linear camera RGB (scored in sRGB after the burst's ISP), not the stored sRGB
    linear_train_target: bool = False
    #: keyword arguments ``restore`` must accept for this kind's observations (:meth:`load_inputs`)
    restore_kwargs: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"

    # ------------------------------------------------------------------ config
    def degradations(self) -> dict[str, frozenset[str]]:
        """``degradation.name`` -> the keys it accepts besides ``name``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ prepare
    def observe(self, task: dict, gt: torch.Tensor, image_id: str) -> tuple[torch.Tensor, dict]:
        """The test observation of one clean image: (lq, extras to store)."""
        raise NotImplementedError

    def prepare_image(self, split_dir: Path, image_id: str, gt: torch.Tensor, lq: Any, notes: list[str],
                      task: dict, split: str, test_crop: int | None, dataset: str = ""
                      ) -> tuple[list[int], list[str]]:
        """Write one source image of ``split`` into ``split_dir``; returns (gt size [H, W], notes).

        ``gt`` (3, H, W) in [0, 1] as loaded, ``lq`` the dataset's own observation or None, ``notes``
        the loader's conversion notes, ``dataset`` the dataset's name (for messages).  Raises
        :class:`SkipImage` for an image this kind cannot use."""
        raise NotImplementedError

    # ------------------------------------------------------------------ train
    def train_degradation(self, task: dict, dataset: dict | None = None
                          ) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor | dict] | None:
        """A function (gt patch, generator) -> lq patch for on-the-fly training data, or None when training
        uses the stored pairs (see :func:`train_degradation`)."""
        return None

    def train_margin(self, task: dict) -> int:
        """Extra px cropped on each side of a training patch before the on-the-fly degradation."""
        return 0

    def train_crop_scale(self, task: dict) -> int:
        """Size of the stored gt / size of the stored lq when training pairs are cropped together."""
        return int(task.get("scale", 1))

    # ------------------------------------------------------------------ restore
    def output_scale(self, task: dict) -> int:
        """Output size / observation size."""
        return int(task.get("scale", 1))

    def load_inputs(self, root: Path, task: dict, ids: list[str]) -> InputLoader:
        """A loader ``id -> (y, extra restore kwargs)`` for the prepared test split ``root``; checks what
        it can before anything is restored."""
        raise NotImplementedError


class _ImageKind(TaskKind):
    """Kinds whose observation is one RGB image ``lq/<id>.png`` of ``gt / scale`` size."""

    def prepare_image(self, split_dir, image_id, gt, lq, notes, task, split, test_crop, dataset=""):
        import torch

        from dpir.data.degrade import mod_crop
        from dpir.data.images import ImageTooSmall
        from dpir.data.prepare import centre_crop

        scale = task.get("scale", 1)
        if split == "test":
            gt, top, left = centre_crop(gt, test_crop, align=scale)
            if lq is not None and test_crop:
                c = test_crop // scale
                lq = lq[..., top // scale: top // scale + c, left // scale: left // scale + c]
        h, w = gt.shape[-2:]
        if h < scale * 2 or w < scale * 2:
            raise SkipImage(f"{image_id}: {h}x{w} is too small for scale {scale}")
        if h % scale or w % scale:
            notes = notes + [f"mod-cropped from {h}x{w} to a multiple of {scale}"]
            gt = mod_crop(gt, scale)
        # quantise the clean image first so that lq is made from exactly what is stored as gt
        gt = torch.round(gt * 255) / 255
        if lq is not None:  # the dataset's own observation (official DIV2K LR, GoPro/HIDE blur)
            lq, extras = lq[..., : gt.shape[-2] // scale, : gt.shape[-1] // scale], {}
            if tuple(lq.shape[-2:]) != (gt.shape[-2] // scale, gt.shape[-1] // scale):
                raise DpirError(f"{dataset}/{image_id}: observation is {tuple(lq.shape[-2:])}, "
                                f"expected {(gt.shape[-2] // scale, gt.shape[-1] // scale)} for its "
                                f"{tuple(gt.shape[-2:])} target")
        else:
            try:
                lq, extras = self.observe(task, gt, image_id)
            except ImageTooSmall as e:        # e.g. smaller than half the blur kernel: skip, as for SR
                raise SkipImage(f"{image_id}: {e}") from None
        write_pair(split_dir, image_id, gt, lq, extras)
        return [int(gt.shape[-2]), int(gt.shape[-1])], notes

    def load_inputs(self, root, task, ids):
        from dpir.data.images import read_image

        return lambda image_id: (read_image(root / "lq" / f"{image_id}.png"), {})


class SRKind(_ImageKind):
    name = "sr"

    def degradations(self):
        return {"bicubic": frozenset()}            # MATLAB imresize(x, 1/scale, 'bicubic'); scale is the task's

    def observe(self, task, gt, image_id):
        from dpir.data.degrade import bicubic_down

        return bicubic_down(gt, task["scale"]), {}


class DeblurKind(_ImageKind):
    name = "deblur"
    #: the options of :func:`dpir.data.blur.make_blur_pair` (its ``BLUR_KEYS``; a test keeps the two equal),
    #: listed here so that the config checks need not import torch
    MOTION_BLUR_KEYS = frozenset({"kernel_size", "noise_sigma", "length", "anxiety", "num_steps", "exposure",
                                  "clip"})

    def degradations(self):
        return {"motion_blur": self.MOTION_BLUR_KEYS}

    def observe(self, task, gt, image_id):
        from dpir.data.blur import make_blur_pair
        from dpir.rng import make_generator

        y, k = make_blur_pair(gt, make_generator(DATA_SEED, image_id), _degradation(task))
        return y, {"kernel": k}

    def train_degradation(self, task, dataset=None):
        if _stores_own_observations(dataset):
            return None
        from dpir.data.blur import make_blur_pair

        cfg = _degradation(task)
        return lambda gt, g: make_blur_pair(gt, g, cfg)[0]


class BurstKind(TaskKind):
    """Synthetic RAW bursts (Bhat et al., CVPR 2021) or the official SyntheticBurst validation bursts."""

    name = "burst"
    image_input = False
    linear_train_target = True
    restore_kwargs = ("meta",)
    #: the options of :func:`dpir.data.burst.synthesize_burst` (the keys of its ``DEFAULTS``; a test keeps
    #: the two equal), listed here so that the config checks need not import torch
    SYNTHESIS_KEYS = frozenset({"downsample_factor", "max_translation", "max_rotation", "warp_margin", "random_ccm",
                                "random_gains", "smoothstep", "gamma", "add_noise", "shot_noise_level",
                                "read_noise_level", "quantize_warp_input"})

    def degradations(self):
        return {"synthetic_burst": frozenset({"burst_size", *self.SYNTHESIS_KEYS})}

    def settings(self, task: dict) -> tuple[int, dict]:
        """(burst_size, options of :func:`dpir.data.burst.synthesize_burst`) from ``task.degradation``."""
        cfg = _degradation(task)
        n = cfg.pop("burst_size", 14)
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise DpirError(f"task key degradation.burst_size must be a positive integer, got {n!r}")
        scale = int(task.get("scale", 4))
        if int(cfg.get("downsample_factor", scale)) != scale:
            raise DpirError(f"burst task: degradation.downsample_factor {cfg['downsample_factor']} differs from "
                            f"the task's scale {scale}; drop it (the scale sets it)")
        cfg["downsample_factor"] = scale
        return n, cfg

    def margin(self, task: dict) -> int:
        """The synthesis warps with a border of ``warp_margin`` px that it crops away again."""
        from dpir.data.burst import DEFAULTS

        return int(self.settings(task)[1].get("warp_margin", DEFAULTS["warp_margin"]))

    def observe(self, task, gt, image_id):
        raise DpirError(f"task kind {self.name!r} cannot be prepared from single images here (burst data is "
                        f"written by dpir.tasks.BURST.prepare_image)")

    def prepare_image(self, split_dir, image_id, gt, lq, notes, task, split, test_crop, dataset=""):
        """Official bursts (a :class:`dpir.data.paper.RawBurst` ``lq``) are stored as they are
        (:func:`write_official_burst`); sRGB images become synthetic bursts (:func:`prepare_burst_image`)."""
        import torch

        from dpir.data.paper import RawBurst

        try:
            if isinstance(lq, RawBurst):    # official bursts: stored as they are, gt stays linear
                size, burst_notes = write_official_burst(split_dir, image_id, lq.frames, gt, lq.meta)
            else:
                size, burst_notes = prepare_burst_image(split_dir, image_id, torch.round(gt * 255) / 255, task,
                                                        split, test_crop if split == "test" else None)
        except DpirError as e:
            raise SkipImage(str(e)) from None
        return size, notes + burst_notes

    def train_degradation(self, task, dataset=None):
        """Always synthesised (no dataset stores training bursts).  The gt patch is an sRGB crop of
        (p + 2 m) px (m = :meth:`train_margin`) and the function returns ``{"lq": frames (N,4,p/8,p/8),
        "gt": linear gt (3,p,p), "meta": burst metadata}``: the target of a burst network is the
        unprocessed linear image, not the sRGB crop it came from."""
        from dpir.data.burst import synthesize_burst

        n, cfg = self.settings(task)

        def degrade(rgb, g) -> dict:
            frames, gt_linear, meta = synthesize_burst(rgb, n, g, cfg)
            return {"lq": frames, "gt": gt_linear, "meta": meta}

        return degrade

    def train_margin(self, task):
        return self.margin(task)

    def train_crop_scale(self, task):
        # bursts are synthesised from the whole sRGB crop: no stored observation to keep aligned with
        return 1

    def output_scale(self, task):
        return BURST_PACKING * int(task.get("scale", 1))

    def load_inputs(self, root, task, ids):
        """``burst/`` (SyntheticBurst layout) with ``meta=[metadata]``, so the method can take its linear
        estimate to sRGB; every listed burst is checked (all frames present) before anything is written."""
        from dpir.data.burst_io import list_bursts, read_burst

        samples = {b.id: b for b in list_bursts(root / "burst", self.settings(task)[0])}
        missing = [i for i in ids if i not in samples]
        if missing:
            raise DpirError(f"bursts {missing} of the manifest are missing under {root / 'burst' / 'bursts'}; "
                            f"re-run `dpir prepare`")

        def load(image_id: str):
            frames, _, meta = read_burst(samples[image_id])
            return frames, {"meta": [meta]}

        return load


SR, DEBLUR, BURST = SRKind(), DeblurKind(), BurstKind()
#: every task kind the config accepts (the schema's ``tasks.*.kind`` enum lists exactly these keys)
TASK_KINDS: dict[str, TaskKind] = {k.name: k for k in (SR, DEBLUR, BURST)}


def task_kind(task: dict | str) -> TaskKind:
    """The kind object of a task config (or of a kind name); an unknown kind is a one-line error."""
    name = task if isinstance(task, str) else (task or {}).get("kind")
    try:
        return TASK_KINDS[name]
    except (KeyError, TypeError):
        raise DpirError(f"unknown task kind {name!r}; known kinds: {', '.join(TASK_KINDS)}") from None


# --------------------------------------------------- module-level names (delegating to the kind objects)

def degradations(kind: str) -> dict[str, frozenset[str]]:
    """The degradations a task kind knows: ``degradation.name`` -> the keys it accepts besides ``name``."""
    return task_kind(kind).degradations()


def observe(task: dict, gt: torch.Tensor, image_id: str) -> tuple[torch.Tensor, dict]:
    """The test observation of one clean image: (lq, extras to store)."""
    return task_kind(task).observe(task, gt, image_id)


def write_extras(split_dir: Path, image_id: str, extras: dict) -> None:
    if "kernel" in extras:
        from dpir.data.blur import save_kernel

        save_kernel(split_dir / "kernels" / f"{image_id}.npy", extras["kernel"])


def write_pair(split_dir: Path, image_id: str, gt: torch.Tensor, lq: torch.Tensor, extras: dict) -> None:
    from dpir.data.images import write_png

    write_png(split_dir / "gt" / f"{image_id}.png", gt)
    write_png(split_dir / "lq" / f"{image_id}.png", lq)
    write_extras(split_dir, image_id, extras)


def train_degradation(task: dict, dataset: dict | None = None
                      ) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor | dict] | None:
    """A function (gt patch, generator) -> lq patch for on-the-fly training data, or None when training
    uses the stored pairs.

    ``dataset`` is the training dataset's config entry.  A dataset with its own observations (GoPro's
    real blurred frames, HIDE's, DIV2K's official LR with ``lr: official``; :mod:`dpir.data.paper`)
    trains on its stored (lq, gt) pairs: re-blurring GoPro's sharp frames synthetically would teach
    the networks camera shake instead of the dynamic-scene blur they are tested on.  The decision is
    the config's (dataset kind and ``lr``), never what happens to be on disk.  Without ``dataset`` (or
    for bundled and folder images) sr uses its stored pairs and deblur blurs on the fly; bursts are
    always synthesised (:meth:`BurstKind.train_degradation`)."""
    return task_kind(task).train_degradation(task, dataset)


def train_margin(task: dict) -> int:
    """Extra px cropped on each side of a training patch before the on-the-fly degradation: the burst
    synthesis warps with a border of ``warp_margin`` px that it crops away again (Bhat et al.)."""
    return task_kind(task).train_margin(task)


def output_scale(task: dict) -> int:
    """Output size / observation size: ``scale`` for images, ``2 * scale`` for packed RAW bursts."""
    return task_kind(task).output_scale(task)


def burst_settings(task: dict) -> tuple[int, dict]:
    """(burst_size, options of :func:`dpir.data.burst.synthesize_burst`) from ``task.degradation``."""
    return BURST.settings(task)


def burst_margin(task: dict) -> int:
    return BURST.margin(task)


# ------------------------------------------------------------------------- burst files of prepare

def prepare_burst_image(split_dir: Path, image_id: str, rgb: torch.Tensor, task: dict, split: str,
                        crop: int | None) -> tuple[list[int], list[str]]:
    """Prepare one burst image; returns (gt size [H, W], notes).

    Test split: a centre crop of ``crop + 2 m`` px (the inner part rounded down to a multiple of
    2 x scale so the frames are whole RGGB quads) becomes a synthetic burst drawn from the generator
    seeded by (DATA_SEED, id), written under ``burst/`` in the SyntheticBurst layout, and
    ``gt/<id>.png`` = the forward ISP of its linear ground truth with the burst's own metadata (the
    sRGB target every method is scored against).  Train split: the sRGB image only (``gt/<id>.png``);
    training synthesises new bursts from it on the fly.
    """
    from dpir.data.burst import process_linear_to_srgb, synthesize_burst
    from dpir.data.burst_io import write_burst
    from dpir.data.images import write_png
    from dpir.rng import make_generator

    if split != "test":
        write_png(split_dir / "gt" / f"{image_id}.png", rgb)
        return [int(rgb.shape[-2]), int(rgb.shape[-1])], []
    n, cfg = BURST.settings(task)
    m, quad = BURST.margin(task), 2 * int(cfg["downsample_factor"])
    H, W = rgb.shape[-2:]
    h, w = H - 2 * m, W - 2 * m
    if crop is not None:
        h, w = min(h, crop), min(w, crop)
    h, w = h // quad * quad, w // quad * quad
    if h < quad or w < quad:
        raise DpirError(f"{image_id}: {H}x{W} is too small for a burst ({quad} px + a {m} px warp margin per side)")
    top, left = (H - h - 2 * m) // 2, (W - w - 2 * m) // 2
    notes = [] if (h + 2 * m, w + 2 * m) == (H, W) or crop is not None else [
        f"cropped from {H}x{W} to {h}x{w} (+ {m} px margin) for the RGGB burst"]
    src = rgb[..., top: top + h + 2 * m, left: left + w + 2 * m]
    frames, gt_linear, meta = synthesize_burst(src, n, make_generator(DATA_SEED, image_id), cfg)
    write_burst(split_dir / "burst", image_id, frames, gt_linear, meta)
    write_png(split_dir / "gt" / f"{image_id}.png", process_linear_to_srgb(gt_linear, meta))
    return [h, w], notes


def write_official_burst(split_dir: Path, image_id: str, frames: torch.Tensor, gt_linear: torch.Tensor,
                         meta: dict) -> tuple[list[int], list[str]]:
    """Store one official RAW burst as :func:`prepare_burst_image` stores a synthetic one: ``burst/`` in
    the SyntheticBurst layout (meta as JSON) and ``gt/<id>.png`` = the burst's forward ISP of its linear
    target, the sRGB image every method is scored against.  Returns (gt size, notes)."""
    from dpir.data.burst import process_linear_to_srgb
    from dpir.data.burst_io import write_burst
    from dpir.data.images import write_png

    notes = []
    # the files hold value * 2^14 in uint16, so values up to 4 are representable; SyntheticBurst's
    # are clipped to [0, 1] by its generator, and write_burst clips too: say so if that ever bites
    over = [name for name, x in (("frames", frames), ("target", gt_linear)) if float(x.max()) > 1.0]
    if over:
        notes.append(f"{' and '.join(over)} above 1.0 clipped to 1.0 (values * 2^14 > 16384 in the source)")
    write_burst(split_dir / "burst", image_id, frames, gt_linear, meta)
    write_png(split_dir / "gt" / f"{image_id}.png", process_linear_to_srgb(gt_linear, meta))
    return [int(gt_linear.shape[-2]), int(gt_linear.shape[-1])], notes
