"""InDI (Delbracio & Milanfar, "Inversion by Direct Iteration: An Alternative to Denoising Diffusion for
Image Restoration", TMLR 2023).  No official code exists; this is our implementation from the paper.

- :mod:`.nets`: the restoration network F(x_t, t) (a small time-conditioned U-Net);
- :mod:`.sampler`: the degradation path x_t and the N-step iteration, as plain functions;
- :mod:`.method`: the restore contract; :mod:`.train`: the trainer.
"""
