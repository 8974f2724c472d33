"""The permuted-MNIST task data set handed to the authors' code (pickled into Datasets/).

It stands in for their ``Permuted_MNIST.PermutedMNIST`` (which downloads MNIST
through torchvision): same item format, a float [784] image of bytes / 255 with
the task's pixel order applied, and an int64 label; ``classes`` as theirs. It
lives in its own module so ``torch.load`` in their code can unpickle it.
"""

import torch
import torch.utils.data


class PermutedTask(torch.utils.data.Dataset):
  """images: uint8 [N, 28, 28]; labels: int64 [N]; permutation: int64 [784]."""

  def __init__(self, images, labels, permutation, train):
    flat = torch.as_tensor(images).reshape(len(images), -1).float()
    self.data = flat[:, torch.as_tensor(permutation)] / 255
    self.targets = torch.as_tensor(labels).long()
    self.train = train
    self.classes = list(range(10))

  def __len__(self):
    return len(self.targets)

  def __getitem__(self, index):
    return self.data[index], self.targets[index]


class TaskLoader:
  """A stand-in for ``torch.utils.data.DataLoader`` over a ``PermutedTask``.

  Their demo builds DataLoader(dset, batch_size, shuffle, num_workers=4): 300
  batches an epoch assembled item by item in 4 worker processes, which on a
  2-core machine takes most of a run's time. This yields the same batches a
  DataLoader would (shuffle: a fresh ``torch.randperm`` each pass from torch's
  global generator; the last batch short, as drop_last=False) by slicing the
  stored tensors; the training itself is untouched.
  """

  def __init__(self, dataset, batch_size=1, shuffle=False, **unused):
    self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle

  def __len__(self):
    return -(-len(self.dataset) // self.batch_size)

  def __iter__(self):
    n = len(self.dataset)
    order = torch.randperm(n) if self.shuffle else torch.arange(n)
    for start in range(0, n, self.batch_size):
      index = order[start : start + self.batch_size]
      yield self.dataset.data[index], self.dataset.targets[index]


def loader(original):
  """DataLoader(...) that routes PermutedTask data sets to TaskLoader, the rest to ``original``."""

  def make(dataset, *args, **kwargs):
    if isinstance(dataset, PermutedTask):
      if args:
        kwargs["batch_size"] = args[0]
      return TaskLoader(dataset, **kwargs)
    return original(dataset, *args, **kwargs)

  return make
