"""DiffIR (Xia et al., "DiffIR: Efficient Diffusion Model for Image Restoration", ICCV 2023).

- :mod:`.nets`: DIRformer, CPEN, the IPR denoiser MLP, DiffIRS1 / DiffIRS2 (archs ``diffir_s1``/``diffir_s2``)
- :mod:`.sampler`: the 4-step IPR diffusion on :mod:`dpir.diffusion` (schedule, forward noising, the
  posterior-mean chain behind an x0-model adapter); the networks draw no noise and run no chain
- :mod:`.train`: the stage-1 and stage-2 trainers (``build_s1``, ``build_s2``)
- :mod:`.method`: the restore contract (``build``)
- :mod:`.checkpoint`: loading the official BasicSR checkpoints (``load_official``)
"""
