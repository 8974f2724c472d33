"""The one torchvision call the authors' MNIST DGMw training path makes, for CPU torch alone.

``approaches/DGMw.py`` imports ``torchvision.utils`` and calls ``save_image``
every 10 epochs (real batch, fakes of the current class and of each past
class). PyPI's torchvision wheels pin their own torch build, so this stand-in
answers the import. ``save_image`` writes the grid as a PNG, laid out as
torchvision 0.2.1's ``make_grid`` (8 a row, 2-pixel padding of 0, values
clamped to [0, 1] unless ``normalize``, then min-max scaled over the whole
batch); its bytes are a picture to look at, not a checked output. Their
dataloader's ``datasets`` / ``transforms`` are not used: the driver builds
their ``data`` dict from our arrays, so any other attribute raises.
"""

import sys
import types

import numpy as np
from PIL import Image


def _grid(batch: np.ndarray, nrow: int = 8, padding: int = 2) -> np.ndarray:
  """float [N, C, H, W] -> float [C, rows (H + p) + p, cols (W + p) + p], padding 0."""
  n, c, h, w = batch.shape
  cols = min(nrow, n)
  rows = -(-n // cols)
  out = np.zeros((c, rows * (h + padding) + padding, cols * (w + padding) + padding), np.float32)
  for k in range(n):
    r, q = divmod(k, cols)
    y, x = r * (h + padding) + padding, q * (w + padding) + padding
    out[:, y : y + h, x : x + w] = batch[k]
  return out


def save_image(tensor, filename, nrow=8, padding=2, normalize=False, **unsupported):
  if unsupported:
    raise RuntimeError(
      f"torchvision stub: save_image(...) with {sorted(unsupported)} is not "
      "implemented (the DGMw path does not use them)"
    )
  batch = tensor.detach().cpu().float().numpy()
  if batch.ndim == 3:
    batch = batch[None]
  if normalize:  # make_grid(normalize=True, range=None): min-max over the whole batch
    lo, hi = float(batch.min()), float(batch.max())
    batch = (batch - lo) / max(hi - lo, 1e-5)
  grid = np.clip(_grid(batch, nrow, padding), 0.0, 1.0)
  pixels = (grid * 255).astype(np.uint8)  # 0.2.1: mul(255).clamp(0, 255).byte(), truncating
  image = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
  Image.fromarray(image).save(filename)


utils = types.ModuleType("torchvision.utils")
utils.save_image = save_image
sys.modules["torchvision.utils"] = utils


def __getattr__(name):
  raise AttributeError(
    f"torchvision stub: torchvision.{name} is not available; only "
    "torchvision.utils.save_image is used on the MNIST DGMw path"
  )
