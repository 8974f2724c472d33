"""The few torchvision pieces the authors' Seq-MNIST and MNIST-360 paths use, for CPU torch alone.

Their modules import torchvision at the top (datasets.MNIST / SVHN, transforms,
transforms.functional). PyPI's torchvision wheels pin their own torch build, and
no download may run here, so this stand-in answers the imports and implements
exactly what the Seq-MNIST and MNIST-360 paths call:

- ``datasets.MNIST(root, train, transform, target_transform, download)``: ``data``
  uint8 [N, 28, 28] and ``targets`` int64 [N] tensors, as torchvision's, taken from
  the arrays the driver installs with ``datasets.MNIST.install(...)`` (our
  ``files`` / ``bundled`` source, so both libraries read the same bytes); ``root``
  and ``download`` are ignored;
- ``transforms.ToTensor``: a uint8 H x W x C image (PIL or ndarray) to a float32
  C x H x W tensor of bytes / 255, as torchvision's;
- ``transforms.Compose``;
- ``transforms.functional.rotate(img, angle)`` on a PIL image (MNIST-360's
  ``IncrementalRotation``): torchvision 0.9.1's defaults, i.e. PIL's
  ``img.rotate(angle, NEAREST, expand=False, center=None, fillcolor=0 per band)``
  (pil_rotate.py; any other argument or a tensor input raises).

Everything else (SVHN, ...) raises at once if used.
"""

import sys
import types

import numpy as np
import torch
import torch.utils.data

from .pil_rotate import rotate


def _unsupported(name):
  def fail(*args, **kwargs):
    raise RuntimeError(
      f"torchvision stub: {name} is not available; only the Seq-MNIST "
      "and MNIST-360 paths of the authors' code run on this stub"
    )

  return fail


class MNIST(torch.utils.data.Dataset):
  """torchvision.datasets.MNIST's data layout over arrays installed by the driver."""

  _arrays = None  # {True: (images uint8 [N, 28, 28], labels int64 [N]), False: (...)}

  @classmethod
  def install(cls, train_images, train_labels, test_images, test_labels):
    cls._arrays = {
      True: (np.asarray(train_images, np.uint8), np.asarray(train_labels, np.int64)),
      False: (np.asarray(test_images, np.uint8), np.asarray(test_labels, np.int64)),
    }

  def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
    del root, download  # the driver decides where the bytes come from
    if MNIST._arrays is None:
      raise RuntimeError("torchvision stub: MNIST.install(...) was not called by the driver")
    images, labels = MNIST._arrays[bool(train)]
    # Fresh tensors per instance: their loaders reassign .data / .targets per task.
    self.data = torch.from_numpy(images.copy())
    self.targets = torch.from_numpy(labels.copy())
    self.train = train
    self.transform = transform
    self.target_transform = target_transform

  def __len__(self):
    return len(self.data)


class ToTensor:
  """uint8 [H, W, C] (PIL image or ndarray) -> float32 [C, H, W] = bytes / 255."""

  def __call__(self, pic):
    array = np.array(pic, dtype=np.uint8, copy=True)
    if array.ndim == 2:
      array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div(255)


class Compose:
  def __init__(self, transforms):
    self.transforms = transforms

  def __call__(self, x):
    for t in self.transforms:
      x = t(x)
    return x


datasets = types.ModuleType("torchvision.datasets")
datasets.MNIST = MNIST
datasets.SVHN = type("SVHN", (torch.utils.data.Dataset,), {"__init__": _unsupported("SVHN")})
transforms = types.ModuleType("torchvision.transforms")
transforms.ToTensor = ToTensor
transforms.Compose = Compose
transforms.transforms = transforms  # `import torchvision.transforms.transforms as transforms`
functional = types.ModuleType("torchvision.transforms.functional")
functional.rotate = rotate
transforms.functional = functional
sys.modules.update(
  {
    "torchvision.datasets": datasets,
    "torchvision.transforms": transforms,
    "torchvision.transforms.transforms": transforms,
    "torchvision.transforms.functional": functional,
  }
)
