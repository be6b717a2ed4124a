"""Training batches: a torch Dataset indexed by the global sample index, read by a DataLoader.

Sample ``n`` of a run (``n = step * B + j``, ``B`` the configured, global batch) is a function of
(train seed, n) alone (:func:`dpir.rng.sample_generators`, stream ``"data"``): its image, crop, the 8
dihedral augmentations (BasicSR's ``augment``) and the on-the-fly degradation (deblurring kernels,
burst synthesis).  :class:`StepBatches` yields for step ``s`` the indices ``[s B, (s + 1) B)``, this
process's contiguous share of them under DDP, from the resume step on.  So the batches are identical
whatever the number of workers, of processes, and wherever a resumed run starts.

Pixels come from the patch store (:mod:`dpir.data.store`): a crop reads only its bytes.
"""
from __future__ import annotations

import torch

# train keys that change how fast batches arrive, never what they hold (batches are a function of the
# sample index); dpir.checkpoint.train_hash leaves them out
from dpir.checkpoint import RESULT_NEUTRAL_TRAIN_KEYS  # noqa: F401
from dpir.errors import DpirError
from dpir.rng import sample_generators

class TrainPatches(torch.utils.data.Dataset):
    """Aligned (lq, gt) training patches of a :class:`dpir.data.store.PatchStore`.

    ``degrade(gt_patch, generator)``, when given, makes the observation on the fly instead of
    cropping the stored one (see :func:`dpir.tasks.train_degradation`); ``margin`` px are cropped on
    each side of the patch for it (the burst synthesis warps with a border it crops away again).
    ``with_lq=False`` gives gt patches only (clean-image training: the denoiser).

    ``ir``, an :class:`dpir.data.store.IrStore` (fusion training with ``train.cache_ir``), adds
    ``"ir"``: the crop of the frozen IR network's estimate of the *whole* stored observation at the gt
    crop's place and symmetry, instead of the loss running the IR net on the lq crop every step.  The
    two differ near the crop's border (the net sees the image around the crop): the cached crop is what
    the fusion net gets at test time, where restore runs the IR net on the whole image."""

    def __init__(self, store, patch: int, *, seed: int, scale: int = 1, augment: bool = True, degrade=None,
                 margin: int = 0, with_lq: bool = True, length: int | None = None, ir=None):
        if len(store) == 0:
            raise DpirError("no training images: the train split is empty (check the dataset and `dpir prepare`)")
        if patch % scale:
            raise DpirError(f"training patch {patch} is not divisible by the scale {scale}")
        self.store, self.patch, self.scale, self.augment, self.degrade = store, patch, scale, augment, degrade
        self.seed, self.margin, self.with_lq, self.length = int(seed), int(margin), with_lq, length
        self.ir = ir
        if ir is not None and (degrade is not None or not with_lq):
            raise DpirError("cached IR estimates need stored observations (no on-the-fly degradation)")
        need = patch + 2 * self.margin
        for i in range(len(store)):
            if min(store.size(i)) < need:
                extra = f" plus a {self.margin} px margin per side" if self.margin else ""
                raise DpirError(f"training image {store.images[i]['id']!r} ({tuple(store.size(i))}) is smaller than "
                                f"the patch size {patch}{extra}; lower `train.patch` in the config")
        if with_lq and degrade is None and any(e["lq"] is None for e in store.images):
            raise DpirError(f"the patch store {store.folder} holds no observations (lq) to crop; prepare the "
                            f"dataset for a task that stores them")

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("TrainPatches has no length unless given one (it is indexed by the global sample index)")
        return self.length

    def __getitem__(self, n: int) -> dict:
        g = sample_generators(self.seed, [n], "data")[0]
        s, p = self.scale, self.patch + 2 * self.margin
        i = int(torch.randint(len(self.store), (1,), generator=g))
        H, W = self.store.size(i)
        top = int(torch.randint((H - p) // s + 1, (1,), generator=g)) * s
        left = int(torch.randint((W - p) // s + 1, (1,), generator=g)) * s
        k = int(torch.randint(8, (1,), generator=g)) if self.augment else 0
        out = {"gt": self.store.crop(i, "gt", top, left, p, p, k)}
        if self.ir is not None:
            out["ir"] = self.ir.crop(i, top, left, p, p, k)
        if not self.with_lq:
            return out
        if self.degrade is None:
            out["lq"] = self.store.crop(i, "lq", top // s, left // s, p // s, p // s, k)
            return out
        made = self.degrade(out["gt"], g)
        if isinstance(made, dict):      # burst: frames, the linear ground truth, the camera metadata
            out["lq"] = made["lq"]
            out["gt"] = made.get("gt", out["gt"])
            if "meta" in made:
                out["meta"] = made["meta"]
        else:
            out["lq"] = made
        return out


def collate(samples: list[dict]) -> dict:
    """Stack the tensors of a batch; ``meta`` (burst camera metadata, one dict per sample) stays a list."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "meta"}
    if "meta" in samples[0]:
        out["meta"] = [s["meta"] for s in samples]
    return out


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: for step ``s`` in ``[start, steps)``, this rank's share of ``[s B, (s + 1) B)``."""

    def __init__(self, batch: int, steps: int, start: int = 0, rank: int = 0, world: int = 1):
        if batch % world:
            raise DpirError(f"train.batch {batch} is the global batch and must be divisible by the {world} "
                            f"training processes; set train.batch to a multiple of {world}")
        self.batch, self.steps, self.start, self.rank, self.world = batch, steps, start, rank, world
        self.local = batch // world

    def indices(self, step: int) -> list[int]:
        first = step * self.batch + self.rank * self.local
        return list(range(first, first + self.local))

    def __iter__(self):
        for s in range(self.start, self.steps):
            yield self.indices(s)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def train_loader(dataset: TrainPatches, sampler: StepBatches, *, workers: int = 0, pin_memory: bool = False,
                 prefetch: int = 2) -> torch.utils.data.DataLoader:
    """torch's DataLoader over ``dataset`` with ``workers`` processes, pinned memory (CUDA) and
    ``prefetch`` batches per worker in flight."""
    if not (isinstance(workers, int) and workers >= 0):
        raise DpirError(f"train.workers must be an integer >= 0, got {workers!r}")
    extra = {"prefetch_factor": prefetch, "persistent_workers": False} if workers else {}
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                       pin_memory=pin_memory, **extra)
