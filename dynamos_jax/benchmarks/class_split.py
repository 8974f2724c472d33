"""Class-incremental splits: tasks of consecutive classes, one head over all classes.

Task t holds classes ``t * c .. (t + 1) * c - 1`` in natural order. Each
task's samples are reshuffled every epoch from the seed; the last partial
batch is kept (padded and masked). Evaluated after every task on every
task's test samples: class-IL (argmax over all classes) and task-IL (argmax
over the classes of the sample's task).

With ``data.validation`` = f > 0 (docs/running.md#a-validation-split) each class's
training samples lose the first ``round(f n)`` of their seeded permutation
(``Benchmark.split_validation``): those are the validation split, scored after
every task as the test samples are (``evaluate(..., split="valid")``).
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy
from dynamos_jax.benchmarks.base import Benchmark, TaskData
from dynamos_jax.data.streams import ClassIncremental, EpochData, epoch_batches, num_batches


class ClassSplit(Benchmark):
  """Base of the class-split benchmarks; subclasses set the class attributes."""

  kind = "class-incremental"
  no_validation = ""
  num_tasks: ClassVar[int] = 5
  classes_per_task: ClassVar[int] = 2

  def __init__(self, config, data, key, joint):
    super().__init__(config, data, key, joint)
    self.split = self.make_split()
    self.num_classes = data.host.num_classes
    tasks = self.split_validation(
      [self.split.task_indices(data.host.train_labels, t) for t in range(self.num_tasks)]
    )
    if joint:
      # One task holding every task's samples; evaluated once, on all tasks.
      self.task_indices = [np.sort(np.concatenate(tasks))]
      self.seen_after = [self.num_tasks]
    else:
      self.task_indices = tasks
      self.seen_after = list(range(1, self.num_tasks + 1))
    self.batches = [num_batches(len(ix), config.batch_size) for ix in self.task_indices]
    self.epochs = config.epochs
    self.rows = max(self.batches)  # Every epoch padded to one shape: one compile.
    self._validation_set = None

  def make_split(self) -> ClassIncremental:
    """Which classes each task holds (a subclass may give a ``streams.ClassGroups``)."""
    return ClassIncremental(self.num_tasks, self.classes_per_task)

  def epoch_data(self, task, epoch):
    key = jax.random.fold_in(jax.random.fold_in(self.key, task), epoch)
    order, mask = epoch_batches(
      key, self.task_indices[task], self.config.batch_size, pad_to=self.rows
    )
    return EpochData(
      self.data.train_images,
      self.data.train_labels,
      jnp.asarray(order),
      jnp.asarray(mask),
      jnp.int32(task),
    )

  def task_data(self, task):
    classes = np.arange(self.num_classes) if self.joint else self.split.task_classes(task)
    indices = self.task_indices[task]

    def batches(batch_size):
      order, mask = self.fixed_order(indices, batch_size)
      return EpochData(self.data.train_images, self.data.train_labels, order, mask, jnp.int32(task))

    return TaskData(task, len(indices), classes, batches)

  def test_set(self):
    return self.data.test_images, np.asarray(self.data.host.test_labels)

  def task_test_set(self, task):
    images, labels = self.test_set()
    rows = np.flatnonzero(self.split.task_of_label(labels) == task)
    return images[rows], labels[rows]

  def validation_set(self) -> tuple[jax.Array, np.ndarray]:
    """Every task's held-out training images on the device [N_v, H, W, C] and labels [N_v]."""
    if self._validation_set is None:
      rows = np.concatenate(self.validation_indices)
      self._validation_set = (
        self.data.train_images[jnp.asarray(rows)],
        np.asarray(self.data.host.train_labels)[rows],
      )
    return self._validation_set

  def evaluate(self, predict, batch_size, split="test"):
    images, labels = self.test_set() if split == "test" else self.validation_set()
    logits = accuracy.predict_logits(lambda x: predict(x, None), images, batch_size)
    class_il, task_il = accuracy.task_accuracies(logits, labels, self.split, range(self.num_tasks))
    return {"class_il": class_il, "task_il": task_il}
