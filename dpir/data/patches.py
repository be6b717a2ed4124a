"""Random training patches from a prepared train split.

Patches are aligned crops of (lq, gt) with the 8 dihedral augmentations (flips and 90-degree
rotations, as BasicSR's ``augment``).  All randomness comes from the generator passed in, so a
seeded run draws the same batches again, and a resumed run continues the same sequence.
"""
from __future__ import annotations

import torch

from dpir.errors import DpirError


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: k in 0..7 (rotation k % 4, flip if k >= 4)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class PatchSampler:
    def __init__(self, pairs: list[tuple[torch.Tensor | None, torch.Tensor]], patch: int, scale: int = 1,
                 augment: bool = True, degrade=None, margin: int = 0):
        """``degrade(gt_patch, generator)``, when given, makes the observation on the fly instead of
        cropping the stored one: it returns the lq patch (deblurring: a new kernel per patch) or a dict
        whose ``"lq"``, ``"gt"`` and ``"meta"`` entries replace the batch's (burst: frames, the linear
        ground truth and the camera metadata).  ``margin`` px are cropped on each side of the patch
        for it (the burst synthesis warps with a border it crops away again)."""
        if not pairs:
            raise DpirError("no training images: the train split is empty (check the dataset and `dpir prepare`)")
        if patch % scale:
            raise DpirError(f"training patch {patch} is not divisible by the scale {scale}")
        self.pairs, self.patch, self.scale, self.augment, self.degrade = pairs, patch, scale, augment, degrade
        self.margin = int(margin)
        need = patch + 2 * self.margin
        for i, (_, gt) in enumerate(pairs):
            if min(gt.shape[-2:]) < need:
                extra = f" plus a {self.margin} px margin per side" if self.margin else ""
                raise DpirError(f"training image #{i} ({tuple(gt.shape[-2:])}) is smaller than the patch size "
                                f"{patch}{extra}; lower `train.patch` in the config")

    def sample(self, batch: int, generator: torch.Generator, with_lq: bool = True) -> dict:
        s, p = self.scale, self.patch + 2 * self.margin
        lqs, gts, metas = [], [], []
        idx = torch.randint(len(self.pairs), (batch,), generator=generator).tolist()
        for i in idx:
            lq, gt = self.pairs[i]
            H, W = gt.shape[-2:]
            top = int(torch.randint((H - p) // s + 1, (1,), generator=generator)) * s
            left = int(torch.randint((W - p) // s + 1, (1,), generator=generator)) * s
            k = int(torch.randint(8, (1,), generator=generator)) if self.augment else 0
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
