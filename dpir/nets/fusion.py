"""DP-IR's fusion network phi_F(x0_IR, x0_D, t) ~ E[x0 | y, x_t].

Zhussip, Koshelev, Lefkimmiatis, "A Modular Conditional Diffusion Framework for Image Reconstruction"
(NeurIPS 2024), Sec. 3.3 and Fig. 2.  The only network trained for a new task: it merges the IR network's
estimate x0_IR = phi_IR(y) = E[x0 | y] and the denoiser's estimate x0_D = phi_D(x~_t, s~_t) = E[x0 | x_t]
according to the diffusion step t.

* encoder, one per estimate (no weight sharing: the two inputs have very different error statistics):
  3x3 conv 3 -> n_f, then one dense block -> f_IR, f_D;
* time branch: sinusoidal encoding of t (``t_dim``) -> Linear(t_dim, t_hidden) -> SiLU ->
  Linear(t_hidden, n_f) -> sigmoid -> w in (0, 1)^{n_f};
* 3CA, "convex combination channel attention": f = w * f_IR + (1 - w) * f_D, per channel;
* decoder: two dense blocks at n_f, then a 3x3 conv n_f -> 3.

Choices the paper leaves open (documented, all constructor arguments):

* dense block = :class:`dpir.nets.blocks.DenseBlock` (``n_layers`` 3x3 conv + LeakyReLU(0.2) layers of
  ``growth`` channels, 1x1 fusion back to n_f, local residual).  ``growth=36, n_layers=4`` make the whole
  net 695,875 parameters at n_f = 64, t_dim = t_hidden = 128: the paper's "about 0.7M".
* the MLP's hidden width ``t_hidden`` (128) and SiLU (the DDPM time-MLP activation).
* the output is the decoder's prediction itself, as drawn in the paper.  ``image_skip=True`` adds the
  average (x0_IR + x0_D) / 2 to it (a residual formulation we offer for very short training runs; not
  in the paper, off by default).

Parameters (3x3 convs with bias, D = DenseBlock.n_params(n_f, growth, n_layers))::

    2 (27 n_f + n_f) + 4 D + (t_dim t_hidden + t_hidden) + (t_hidden n_f + n_f) + 9 n_f 3 + 3
"""
from __future__ import annotations

import torch
from torch import nn

from dpir.nets.blocks import DenseBlock, conv3x3, convex_combination, timestep_embedding


class FusionNet(nn.Module):
    """phi_F: ``forward(x0_ir, x0_d, t) -> x0_hat`` with ``t`` a ``(B,)`` long tensor of diffusion steps."""

    def __init__(self, n_f: int = 64, growth: int = 36, n_layers: int = 4, t_dim: int = 128,
                 t_hidden: int = 128, channels: int = 3, image_skip: bool = False):
        super().__init__()
        self.t_dim, self.image_skip = t_dim, image_skip
        self.head_ir = conv3x3(channels, n_f)
        self.head_d = conv3x3(channels, n_f)
        self.enc_ir = DenseBlock(n_f, growth, n_layers)
        self.enc_d = DenseBlock(n_f, growth, n_layers)
        self.time_mlp = nn.Sequential(nn.Linear(t_dim, t_hidden), nn.SiLU(), nn.Linear(t_hidden, n_f))
        self.dec = nn.Sequential(DenseBlock(n_f, growth, n_layers), DenseBlock(n_f, growth, n_layers))
        self.tail = conv3x3(n_f, channels)

    @staticmethod
    def n_params(n_f: int = 64, growth: int = 36, n_layers: int = 4, t_dim: int = 128, t_hidden: int = 128,
                 channels: int = 3, image_skip: bool = False) -> int:
        """The closed formula of the module docstring."""
        dense = DenseBlock.n_params(n_f, growth, n_layers)
        heads = 2 * (9 * channels * n_f + n_f)
        mlp = t_dim * t_hidden + t_hidden + t_hidden * n_f + n_f
        return heads + 4 * dense + mlp + 9 * n_f * channels + channels

    def channel_weights(self, t: torch.Tensor | int) -> torch.Tensor:
        """w(t) in (0, 1)^{n_f}, shape ``(B, n_f)``: the 3CA weight of the IR features."""
        t = torch.as_tensor(t, device=self.tail.weight.device)
        return torch.sigmoid(self.time_mlp(timestep_embedding(t, self.t_dim)))

    def forward(self, x0_ir: torch.Tensor, x0_d: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        f_ir = self.enc_ir(self.head_ir(x0_ir))
        f_d = self.enc_d(self.head_d(x0_d))
        w = self.channel_weights(t)
        if w.shape[0] == 1 and x0_ir.shape[0] > 1:
            w = w.expand(x0_ir.shape[0], -1)
        f = convex_combination(w[:, :, None, None], f_ir, f_d)
        out = self.tail(self.dec(f))
        if self.image_skip:
            out = out + 0.5 * (x0_ir + x0_d)
        return out
