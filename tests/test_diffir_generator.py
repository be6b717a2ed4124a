"""DiffIR has no hidden default seed: DiffIRS2 draws no noise at all (it evaluates G given an IPR z), and
the start noise z_T of the IPR chain comes from the method's generator(s)."""
from __future__ import annotations

import pytest
import torch

from baselines.diffir.method import DiffIR
from baselines.diffir.nets import DiffIRS2
from dpir.errors import DpirError

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2],
        "n_encoder_res": 1, "n_feats": 4, "ffn_expansion_factor": 2.0}


def test_forward_without_an_ipr_names_the_fix():
    torch.manual_seed(0)
    net = DiffIRS2("sr", **TINY).eval()
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), pytest.raises(DpirError, match=r"needs the IPR z.*sample_ipr.*one generator per image"):
        net(y, None)
    with torch.no_grad():
        a = DiffIR(net).restore(y, [torch.Generator().manual_seed(3)])
        b = net(y, torch.zeros(1, net.ipr_dim))
    assert a.shape == b.shape == (1, 3, 32, 32)
