"""Code shared by the baselines (no baseline imports another baseline's package).

- :mod:`.blocks`: image-size helpers (bicubic upsampling, padding to a size multiple) and the U-Net
  layers of SRDiff's official code that InDI's network reuses.
"""
