"""Random training patches from a prepared train split: the dihedral augmentation, and the sampler
that training used before the patch store.

Training now reads per-sample-index patches from the memory-mapped patch store
(:mod:`dpir.data.loader`, :mod:`dpir.data.store`).  :class:`PatchSampler` below (one generator for a
whole batch sequence, whole PNGs decoded per batch in lazy mode) stays as the comparison of
``scripts/bench_loader.py`` and for code that samples in-memory pairs directly.

Patches are aligned crops of (lq, gt) with the 8 dihedral augmentations (flips and 90-degree
rotations, as BasicSR's ``augment``).  All randomness comes from the generator passed in, so a
seeded run draws the same batches again, and a resumed run continues the same sequence.

The paper's training sets do not fit in memory as float32 (Zurich RAW-to-RGB: 46,839 JPGs, ~113 GB;
GoPro train: ~46 GB), so a sampler over stored images (:class:`dpir.data.prepare.StoredPair`) keeps
only their paths and sizes and decodes the images of each batch when it draws it.  A split smaller
than :data:`CACHE_BYTES` is decoded once up front instead (the bundled default config).  The crop is
drawn from the manifest's size before the file is read, so both modes make the same random draws in
the same order and give bit-identical batches.
"""
from __future__ import annotations

import logging

import torch

from dpir.errors import DpirError

log = logging.getLogger(__name__)

#: a train split whose decoded float32 images take less than this is kept in memory (``cache=None``)
CACHE_BYTES = 1 << 30


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: k in 0..7 (rotation k % 4, flip if k >= 4)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class PatchSampler:
    def __init__(self, pairs: list, patch: int, scale: int = 1, augment: bool = True, degrade=None,
                 margin: int = 0, cache: bool | None = None):
        """``pairs`` are (lq, gt) tensors (``lq`` may be None when ``degrade`` makes it), or stored images:
        objects with ``size`` (gt H, W), ``nbytes(with_lq)`` and ``read(with_lq) -> (lq, gt)``
        (:class:`dpir.data.prepare.StoredPair`).  Stored images are decoded per batch, or all at once
        here when ``cache`` is True, or None (the default) and they take less than :data:`CACHE_BYTES`.

        ``degrade(gt_patch, generator)``, when given, makes the observation on the fly instead of
        cropping the stored one: it returns the lq patch (deblurring: a new kernel per patch) or a dict
        whose ``"lq"``, ``"gt"`` and ``"meta"`` entries replace the batch's (burst: frames, the linear
        ground truth and the camera metadata).  ``margin`` px are cropped on each side of the patch
        for it (the burst synthesis warps with a border it crops away again)."""
        if not pairs:
            raise DpirError("no training images: the train split is empty (check the dataset and `dpir prepare`)")
        if patch % scale:
            raise DpirError(f"training patch {patch} is not divisible by the scale {scale}")
        if cache not in (None, True, False):
            raise DpirError(f"train.cache_images must be true, false or null (automatic: cache below "
                            f"{CACHE_BYTES / 2**30:g} GB), got {cache!r}")
        self.pairs, self.patch, self.scale, self.augment, self.degrade = pairs, patch, scale, augment, degrade
        self.margin = int(margin)
        in_memory = [isinstance(p, tuple) for p in pairs]
        if any(in_memory) and not all(in_memory):
            raise ValueError("pairs mixes (lq, gt) tensors with stored images")
        need = patch + 2 * self.margin
        for i in range(len(pairs)):
            if min(self._size(i)) < need:
                extra = f" plus a {self.margin} px margin per side" if self.margin else ""
                name = f"#{i}" if in_memory[0] else f"{pairs[i].id!r}"
                raise DpirError(f"training image {name} ({tuple(self._size(i))}) is smaller than the patch size "
                                f"{patch}{extra}; lower `train.patch` in the config")
        # a stored lq is only ever cropped when nothing makes the observation on the fly
        self._stored_lq = degrade is None
        if in_memory[0]:
            self.cached, self._images = True, pairs
        else:
            nbytes = sum(p.nbytes(self._stored_lq) for p in pairs)
            self.cached = nbytes < CACHE_BYTES if cache is None else cache
            log.info("training data: %d images, %.2f GB as float32: %s", len(pairs), nbytes / 2**30,
                     "decoded once, kept in memory" if self.cached else "decoded per batch")
            self._images = [p.read(self._stored_lq) for p in pairs] if self.cached else None

    def _size(self, i: int) -> tuple[int, int]:
        item = self.pairs[i]
        return tuple(item[1].shape[-2:]) if isinstance(item, tuple) else tuple(item.size)

    def sample(self, batch: int, generator: torch.Generator, with_lq: bool = True) -> dict:
        s, p = self.scale, self.patch + 2 * self.margin
        lqs, gts, metas = [], [], []
        decoded: dict[int, tuple] = {}     # lazy mode: an image drawn twice in one batch is read once
        idx = torch.randint(len(self.pairs), (batch,), generator=generator).tolist()
        for i in idx:
            H, W = self._size(i)
            top = int(torch.randint((H - p) // s + 1, (1,), generator=generator)) * s
            left = int(torch.randint((W - p) // s + 1, (1,), generator=generator)) * s
            k = int(torch.randint(8, (1,), generator=generator)) if self.augment else 0
            if self._images is not None:
                lq, gt = self._images[i]
            else:
                if i not in decoded:
                    decoded[i] = self.pairs[i].read(with_lq and self._stored_lq)
                lq, gt = decoded[i]
            gts.append(dihedral(gt[..., top: top + p, left: left + p], k))
            if with_lq and self.degrade is not None:
                out = self.degrade(gts[-1], generator)
                if isinstance(out, dict):
                    lqs.append(out["lq"])
                    gts[-1] = out.get("gt", gts[-1])
                    if "meta" in out:
                        metas.append(out["meta"])
                else:
                    lqs.append(out)
            elif with_lq:
                lqs.append(dihedral(lq[..., top // s: (top + p) // s, left // s: (left + p) // s], k))
        out = {"gt": torch.stack(gts)}
        if with_lq:
            out["lq"] = torch.stack(lqs)
        if metas:
            out["meta"] = metas
        return out
