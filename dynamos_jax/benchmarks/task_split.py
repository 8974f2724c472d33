"""Task-incremental splits (a head per task, task identity at test time), and split CIFAR-100.

Task t holds classes ``t * K .. (t + 1) * K - 1`` of the dataset in natural
order (K = ``classes_per_task``; the class order of the papers is not known,
docs/slni.md#undetermined-choices); a sample's label is its class's place in its task,
0..K-1, so ``num_classes`` is K, the width of one head. Each task's samples
are reshuffled every epoch from the seed; the last partial batch is kept
(padded and masked). After every task, every task's test samples are scored
under two protocols:

- ``task_il``: the argmax of the task's own head (``predict(images, t)``), the
  benchmark's protocol (docs/slni.md#metrics).
- ``class_il``: without the task: the argmax over ``predict(images, None)``.
  A method with a head per task gives every head's logits side by side
  [M, T * K], scored against the class over all tasks (``t * K + label``);
  a method with one shared head gives K logits, which cannot tell the tasks
  apart, so there it equals ``task_il``.

With ``data.validation`` = f > 0 (docs/running.md#a-validation-split) each class's
training samples lose the first ``round(f n)`` of their seeded permutation
(``Benchmark.split_validation``): the validation split, seen as the test images are
(``eval_view``) and scored under both protocols after every task.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy
from dynamos_jax.benchmarks.base import Benchmark, TaskData, register
from dynamos_jax.data.streams import ClassIncremental, EpochData, epoch_batches, num_batches
from dynamos_jax.errors import ConfigError


class TaskSplit(Benchmark):
  """Base of the task-incremental splits; subclasses set the class attributes."""

  kind = "task-incremental"
  no_validation = ""
  num_tasks: ClassVar[int] = 10
  classes_per_task: ClassVar[int] = 10

  def __init__(self, config, data, key, joint):
    super().__init__(config, data, key, joint)
    classes = self.num_tasks * self.classes_per_task
    if data.host.num_classes != classes:
      raise ConfigError(
        f"{self.name} splits {classes} classes into {self.num_tasks} tasks, "
        f"but its dataset has {data.host.num_classes}: use a {self.dataset} "
        "source"
      )
    self.split = ClassIncremental(self.num_tasks, self.classes_per_task)
    self.num_classes = self.classes_per_task
    k = self.classes_per_task
    # Labels within the task, on the device once (shared by the seeds).
    self.train_labels = jax.device_put(np.asarray(data.host.train_labels % k, np.int32))
    self.test_labels = np.asarray(data.host.test_labels % k, np.int32)
    self.test_task = np.asarray(data.host.test_labels // k)
    tasks = self.split_validation(
      [self.split.task_indices(data.host.train_labels, t) for t in range(self.num_tasks)]
    )
    if joint:
      self.task_indices, self.seen_after = [np.sort(np.concatenate(tasks))], [self.num_tasks]
    else:
      self.task_indices, self.seen_after = tasks, list(range(1, self.num_tasks + 1))
    self.batches = [num_batches(len(ix), config.batch_size) for ix in self.task_indices]
    self.epochs = config.epochs
    self.rows = max(self.batches)  # Every epoch padded to one shape: one compile.
    self._test_images = None
    self._validation_set = None

  def _data(self, order, mask, task: int, key: jax.Array | None) -> EpochData:
    """The padded batches ``order``, ``mask`` of ``task``; ``key``: the epoch's key
    for a benchmark that augments (None: no augmentation, as the hooks see them)."""
    del key
    return EpochData(self.data.train_images, self.train_labels, order, mask, jnp.int32(task))

  def eval_view(self, images: jax.Array) -> jax.Array:
    """The test images as the methods see them (a subclass may crop them)."""
    return images

  def epoch_data(self, task, epoch):
    key = jax.random.fold_in(jax.random.fold_in(self.key, task), epoch)
    order, mask = epoch_batches(
      key, self.task_indices[task], self.config.batch_size, pad_to=self.rows
    )
    return self._data(jnp.asarray(order), jnp.asarray(mask), task, key)

  def task_data(self, task):
    indices = self.task_indices[task]
    # Its labels: the places within a task (a joint run's merged task too).
    return TaskData(
      task,
      len(indices),
      np.arange(self.classes_per_task),
      lambda b: self._data(*self.fixed_order(indices, b), task, None),
    )

  def test_set(self):
    """Every test image as the methods see it [N, H, W, 3]; labels within their task."""
    if self._test_images is None:
      self._test_images = self.eval_view(self.data.test_images)
    return self._test_images, self.test_labels

  def task_test_set(self, task):
    images, labels = self.test_set()
    rows = np.flatnonzero(self.test_task == task)
    return images[rows], labels[rows]

  def validation_set(self) -> tuple[jax.Array, np.ndarray]:
    """Every task's held-out training images as the methods see them [N_v, H, W, 3] (the
    test images' view), labels within their task [N_v]."""
    if self._validation_set is None:
      rows = np.concatenate(self.validation_indices)
      self._validation_set = (
        self.eval_view(self.data.train_images[jnp.asarray(rows)]),
        np.asarray(self.data.host.train_labels % self.classes_per_task, np.int32)[rows],
      )
    return self._validation_set

  def _task_sets(self, split: str):
    """(images, labels) of each task on ``split`` ("test" or "valid")."""
    if split == "test":
      return [self.task_test_set(t) for t in range(self.num_tasks)]
    images, labels = self.validation_set()  # Task by task, each one's rows in a block.
    bounds = np.cumsum([0] + [len(ix) for ix in self.validation_indices])
    return [(images[a:b], labels[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

  def evaluate(self, predict, batch_size, split="test"):
    k = self.classes_per_task
    class_il, task_il = [], []
    for t, (images, labels) in enumerate(self._task_sets(split)):
      own = accuracy.predict_logits(lambda x: predict(x, jnp.int32(t)), images, batch_size)
      task_il.append(100.0 * float(np.mean(np.argmax(own, -1) == labels)))
      every = accuracy.predict_logits(lambda x: predict(x, None), images, batch_size)
      target = labels + t * k if every.shape[1] == self.num_tasks * k else labels
      class_il.append(100.0 * float(np.mean(np.argmax(every, -1) == target)))
    return {"class_il": class_il, "task_il": task_il}


@register
class SplitCIFAR100(TaskSplit):
  """CIFAR-100 in 10 tasks of 10 classes (docs/slni.md#split-cifar-100), 32x32x3."""

  name = "split-cifar100"
  dataset = "cifar100"
  num_tasks = 10
  classes_per_task = 10
