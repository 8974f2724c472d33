"""Permuted MNIST (docs/slni.md#permuted-mnist): five tasks of all ten digits, pixels permuted.

Domain-incremental: every task has the same ten classes and one shared head;
task 1 is plain MNIST and task t > 1 applies its own fixed permutation of the
784 pixels (drawn from the seed's data key, so identical for every method of
a seed). Every task trains on the whole training set and is tested on the
whole test set under its permutation. Class-IL and task-IL coincide (a task's
classes are all ten): both matrices are reported and are equal.

A sample of the stream is ``task * N + i`` (image i under task t's
permutation), so a joint run mixes the tasks' samples in one shuffled task.

With ``data.validation`` = f > 0 (docs/running.md#a-validation-split) the first
``round(f n)`` of each class's seeded permutation of its n training images are held
out of every task (the same images for each task, as the test images are): task t
trains on the others under its permutation and its validation split is the held-out
images under its permutation, scored as its test images are.
"""

from typing import ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy
from dynamos_jax.benchmarks.base import Benchmark, TaskData, register
from dynamos_jax.data.streams import Batch, EpochData, epoch_batches, num_batches

# fold_in constant of the permutations' key (the epochs use fold_in(task)).
_PERMUTATIONS = 2**31 - 2


@flax.struct.dataclass
class PermutedEpochData(EpochData):
  """``order`` holds stream samples ``task * N + i``; permutations: int32 [T, 784]."""

  permutations: jax.Array | None = None

  def batch(self, position):
    n = self.images.shape[0]
    sample = self.order[position]
    index, task = sample % n, sample // n
    pixels = self.images[index][..., 0].reshape(index.shape[0], -1)
    permuted = jnp.take_along_axis(pixels, self.permutations[task], axis=1)
    images = permuted.reshape(index.shape[0], *self.images.shape[1:3], 1)
    return Batch(images, self.labels[index], self.mask[position], self.task)


@register
class PermutedMNIST(Benchmark):
  name = "permuted-mnist"
  dataset = "mnist"
  kind = "domain-incremental"
  no_validation = ""
  num_tasks: ClassVar[int] = 5

  def __init__(self, config, data, key, joint):
    super().__init__(config, data, key, joint)
    self.num_classes = 10
    pixels = int(np.prod(data.host.train_images.shape[1:3]))
    perm_key = jax.random.fold_in(key, _PERMUTATIONS)
    self.permutations = np.stack(
      [np.arange(pixels)]
      + [
        np.asarray(jax.random.permutation(jax.random.fold_in(perm_key, t), pixels))
        for t in range(1, self.num_tasks)
      ]
    ).astype(np.int32)
    n = len(data.host.train_labels)
    tasks = self.split_validation(
      [t * n + np.arange(n, dtype=np.int32) for t in range(self.num_tasks)],
      image_of=lambda samples: samples % n,
    )
    if joint:
      self.task_indices, self.seen_after = [np.concatenate(tasks)], [self.num_tasks]
    else:
      self.task_indices, self.seen_after = tasks, list(range(1, self.num_tasks + 1))
    self.batches = [num_batches(len(ix), config.batch_size) for ix in self.task_indices]
    self.epochs = config.epochs
    self.rows = max(self.batches)

  @property
  def image_shape(self):
    return (*self.data.host.train_images.shape[1:3], 1)

  def _data(self, order, mask, task) -> PermutedEpochData:
    return PermutedEpochData(
      self.data.train_images,
      self.data.train_labels,
      order,
      mask,
      jnp.int32(task),
      None,
      jnp.asarray(self.permutations),
    )

  def epoch_data(self, task, epoch):
    key = jax.random.fold_in(jax.random.fold_in(self.key, task), epoch)
    order, mask = epoch_batches(
      key, self.task_indices[task], self.config.batch_size, pad_to=self.rows
    )
    return self._data(jnp.asarray(order), jnp.asarray(mask), task)

  def task_data(self, task):
    indices = self.task_indices[task]
    return TaskData(
      task, len(indices), np.arange(10), lambda b: self._data(*self.fixed_order(indices, b), task)
    )

  def _permuted(self, images: jax.Array, task: int) -> jax.Array:
    """``images`` [M, H, W, 1] under task ``task``'s permutation of the pixels."""
    images = images[..., 0]
    flat = images.reshape(images.shape[0], -1)[:, self.permutations[task]]
    return flat.reshape(*images.shape, 1)

  def _permuted_test(self, task: int) -> jax.Array:
    return self._permuted(self.data.test_images, task)

  def test_set(self):
    """Task 1's (unpermuted) test images and their labels."""
    return self.task_test_set(0)

  def task_test_set(self, task):
    return self._permuted_test(task), np.asarray(self.data.host.test_labels)

  def validation_set(self) -> tuple[jax.Array, np.ndarray]:
    """The held-out training images (unpermuted: task 1's) [N_v, H, W, 1] and labels [N_v]."""
    return self.task_validation_set(0)

  def task_validation_set(self, task: int) -> tuple[jax.Array, np.ndarray]:
    """Task ``task``'s validation split: the held-out images under its permutation."""
    rows = self.validation_indices[task] % len(self.data.host.train_labels)
    images = self.data.train_images[jnp.asarray(rows)]
    return self._permuted(images, task), np.asarray(self.data.host.train_labels)[rows]

  def evaluate(self, predict, batch_size, split="test"):
    accuracies = []
    for t in range(self.num_tasks):
      images, labels = self.task_test_set(t) if split == "test" else self.task_validation_set(t)
      logits = accuracy.predict_logits(lambda x: predict(x, jnp.int32(t)), images, batch_size)
      accuracies.append(100.0 * float(np.mean(np.argmax(logits, -1) == labels)))
    return {"class_il": accuracies, "task_il": list(accuracies)}
