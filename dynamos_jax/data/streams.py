"""Turning a dataset into a continual-learning stream of padded batches.

Batches are indices into the device-resident training set, padded to a
static shape: ``order`` [num_batches, B] int32 and ``mask`` [num_batches, B]
bool (the last partial batch of an epoch is kept, its padding masked out).
"""

import dataclasses

import flax.struct
import jax
import numpy as np

from dynamos_jax.data import mnist360


@flax.struct.dataclass
class Batch:
  """A padded batch of the stream, as a method's step sees it.

  images: uint8 [B, H, W, 3]; labels: int32 [B]; mask: bool [B] (False =
  padding); task: int32 [] the task the batch belongs to (0 in a stream
  without tasks).
  """

  images: jax.Array
  labels: jax.Array
  mask: jax.Array
  task: jax.Array | int = 0


@flax.struct.dataclass
class EpochData:
  """One epoch of the stream on the device.

  images: uint8 [N, H, W, 3] and labels: int32 [N], the whole training set;
  order: int32 [rows, B] sample indices of each batch; mask: bool [rows, B];
  task: int32 [] the task; rotation: int32 [rows, B, 6] PIL's
  nearest-neighbour map rotating each sample (MNIST-360), or None.

  A benchmark that transforms its batches otherwise subclasses this and
  overrides ``batch``. In a multi-seed run the fields in ``SHARED`` are one
  copy for every seed; every other (non-None) field has a leading seed axis.
  """

  SHARED = ("images", "labels", "task")

  images: jax.Array
  labels: jax.Array
  order: jax.Array
  mask: jax.Array
  task: jax.Array
  rotation: jax.Array | None = None

  def batch(self, position: jax.Array) -> Batch:
    """The padded batch of row ``position`` (traced), its images gathered (and rotated)."""
    index = self.order[position]
    images = self.images[index]
    if self.rotation is not None:  # MNIST-360: the method sees, and stores, rotated images.
      images = mnist360.rotate_with_params(images, self.rotation[position])
    return Batch(images, self.labels[index], self.mask[position], self.task)

  def per_seed_fields(self) -> list[str]:
    """The fields that differ between seeds (None fields left out)."""
    return [
      f.name
      for f in dataclasses.fields(self)
      if f.name not in self.SHARED and getattr(self, f.name) is not None
    ]


@dataclasses.dataclass(frozen=True)
class ClassIncremental:
  """Tasks of consecutive classes in natural order: (0, 1), (2, 3), ...

  Attributes:
    num_tasks: T.
    classes_per_task: classes in each task.
  """

  num_tasks: int = 5
  classes_per_task: int = 2

  def task_classes(self, task: int) -> np.ndarray:
    """[classes_per_task] the labels of ``task``."""
    return np.arange(task * self.classes_per_task, (task + 1) * self.classes_per_task)

  def task_indices(self, labels: np.ndarray, task: int) -> np.ndarray:
    """Indices (file order) of the samples of ``task`` among ``labels`` [N]."""
    return np.flatnonzero(np.isin(labels, self.task_classes(task))).astype(np.int32)

  def task_of_label(self, labels: np.ndarray) -> np.ndarray:
    """[N] the task each label belongs to."""
    return np.asarray(labels) // self.classes_per_task


@dataclasses.dataclass(frozen=True)
class ClassGroups:
  """Tasks of consecutive classes of given sizes: sizes (2, 3) -> (0, 1), (2, 3, 4).

  ``ClassIncremental``'s interface for tasks of unequal sizes (``benchmarks.arrays``).
  """

  sizes: tuple[int, ...]

  @property
  def num_tasks(self) -> int:
    return len(self.sizes)

  def task_classes(self, task: int) -> np.ndarray:
    start = sum(self.sizes[:task])
    return np.arange(start, start + self.sizes[task])

  def task_indices(self, labels: np.ndarray, task: int) -> np.ndarray:
    return np.flatnonzero(np.isin(labels, self.task_classes(task))).astype(np.int32)

  def task_of_label(self, labels: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.cumsum(self.sizes), np.asarray(labels), side="right")


def num_batches(num_examples: int, batch_size: int) -> int:
  """Batches in one epoch, the last partial batch included."""
  return -(-num_examples // batch_size)


def epoch_batches(
  key: jax.Array, indices: np.ndarray, batch_size: int, pad_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """One shuffled epoch over ``indices`` as padded batches.

  Args:
    key: PRNG key of this (task, epoch).
    indices: [n] int, the samples of the task.
    batch_size: B.
    pad_to: number of batch rows to return (>= the epoch's batches), so that
      every task of a run gives arrays of one shape; default: the epoch's own.

  Returns:
    order: [rows, B] int32 sample indices (padding points at sample 0).
    mask: [rows, B] bool, True for real samples.
  """
  n = len(indices)
  rows = num_batches(n, batch_size) if pad_to is None else pad_to
  if rows * batch_size < n:
    raise ValueError(f"pad_to={pad_to} rows of {batch_size} cannot hold {n} samples")
  shuffled = np.asarray(indices)[np.asarray(jax.random.permutation(key, n))]
  order = np.zeros(rows * batch_size, np.int32)
  order[:n] = shuffled
  mask = np.arange(rows * batch_size) < n
  return order.reshape(rows, batch_size), mask.reshape(rows, batch_size)
