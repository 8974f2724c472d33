"""Import-only stand-in for torchvision, for the authors' permuted-MNIST demo on CPU torch.

The demo's modules import torchvision (datasets, models, transforms) at the top
but the MLP path never calls it: the data sets are prepared by our driver and the
network comes from the shipped models/*.pth.tar. PyPI's torchvision wheels need
their CUDA build of torch, so this stub answers the imports and fails loudly if
anything is actually used.
"""

import types

import torch.utils.data


def _fail(*args, **kwargs):
  raise RuntimeError("torchvision stub: the permuted-MNIST path should not use torchvision")


class _Unused:
  __init__ = _fail


class _Transform:
  """Constructible (their importance pass builds an ImageNet transform it never applies)."""

  def __init__(self, *args, **kwargs):
    pass

  __call__ = _fail


datasets = types.ModuleType("torchvision.datasets")
datasets.MNIST = _Unused
# ImageFolderTrainVal subclasses datasets.ImageFolder at import time.
datasets.ImageFolder = type("ImageFolder", (torch.utils.data.Dataset,), {"__init__": _fail})
models = types.ModuleType("torchvision.models")
models.alexnet = _Unused
transforms = types.ModuleType("torchvision.transforms")
for _name in (
  "Compose",
  "Scale",
  "Resize",
  "CenterCrop",
  "ToTensor",
  "Normalize",
  "RandomResizedCrop",
  "RandomHorizontalFlip",
):
  setattr(transforms, _name, _Transform)


def get_image_backend():
  return "PIL"
