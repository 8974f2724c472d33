"""A class-incremental benchmark from a user's own arrays: ``from_arrays`` (docs/api.md).

The classes are renumbered in task order (task 0's classes first, in the order
given), so that every task holds consecutive labels as the built-in splits do;
``classes`` keeps the user's label of each renumbered class. Evaluation is the
class split's (``class_split``): class-IL over every class, task-IL over the
sample's task's classes. The benchmark and its arrays live in this process only:
a run trained on it resumes, evaluates and is analysed after ``from_arrays`` has
registered the same name again.
"""

from collections.abc import Sequence

import numpy as np

from dynamos_jax.benchmarks.base import REGISTRY
from dynamos_jax.benchmarks.class_split import ClassSplit
from dynamos_jax.benchmarks.one_class import OneClass
from dynamos_jax.data import sources
from dynamos_jax.data.streams import ClassGroups
from dynamos_jax.errors import DataError

KINDS = {"class_il": "class-incremental", "class-incremental": "class-incremental"}


class ArrayBenchmark(ClassSplit):
  """Base of ``from_arrays``' benchmarks; each call makes a subclass with its tasks."""

  sizes: tuple[int, ...] = ()
  classes: np.ndarray = np.zeros(0, np.int64)  # [K] the user's label of each class

  def make_split(self) -> ClassGroups:
    return ClassGroups(self.sizes)


class ArrayOneClass(OneClass):
  """Base of ``from_arrays(..., protocol="dgm")``: DGM's one-class protocol on the user's
  images (resized to 32x32, ``holdout`` of each class held out for ``dgm.selection=
  best_valid``, one fixed order within a task; docs/dgm.md#data-and-preprocessing)."""

  classes: np.ndarray = np.zeros(0, np.int64)
  holdout = 0.15
  train_rounding = False  # int(0.15 n) held out, as MNIST's


PROTOCOLS = {"split": ArrayBenchmark, "dgm": ArrayOneClass}


def images(where: str, x, channels: int = 3) -> np.ndarray:
  """uint8 [N, H, W, channels] from uint8 or float-in-[0, 1] images [N, H, W(, 1 or 3)]
  (grey repeated to 3 channels; ``channels`` 1 keeps one)."""
  x = np.asarray(x)
  if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)) or len(x) == 0:
    raise DataError(
      f"{where} images must be [N, H, W], [N, H, W, 1] or [N, H, W, 3]; got {x.shape}"
    )
  if np.issubdtype(x.dtype, np.floating):
    low, high = float(np.min(x)), float(np.max(x))
    if low < 0.0 or high > 1.0:
      raise DataError(
        f"{where} images are floats in [{low:g}, {high:g}]: give floats in [0, 1] or uint8"
      )
    x = np.round(x * 255.0).astype(np.uint8)
  elif x.dtype != np.uint8:
    raise DataError(f"{where} images have dtype {x.dtype}: give uint8 or floats in [0, 1]")
  x = sources._to_rgb(x)
  return x[..., :1] if channels == 1 else x


def _labels(where: str, y, n: int) -> np.ndarray:
  y = np.asarray(y)
  if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
    raise DataError(
      f"{where} labels must be integers [{n}] (one per image); got {y.dtype} {y.shape}"
    )
  return y.astype(np.int64)


def _task_sizes(tasks) -> tuple[list[int], tuple[int, ...]]:
  """The classes in task order and each task's size; errors for empty or shared classes."""
  if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
    raise DataError("tasks must be a non-empty list of lists of labels, e.g. [[0, 1], [2, 3]]")
  order, owner = [], {}
  for t, task in enumerate(tasks):
    if isinstance(task, (str, bytes)) or not isinstance(task, Sequence) or not task:
      raise DataError(f"task {t} must be a non-empty list of labels; got {task!r}")
    for c in task:
      if not isinstance(c, (int, np.integer)):
        raise DataError(f"task {t} holds {c!r}: labels are integers")
      if int(c) in owner:
        raise DataError(
          f"label {c} is in task {owner[int(c)]} and task {t}: tasks must not overlap"
        )
      owner[int(c)] = t
      order.append(int(c))
  return order, tuple(len(task) for task in tasks)


def from_arrays(
  train, test, tasks, kind: str = "class_il", name: str = "mine", protocol: str = "split"
) -> type[ClassSplit] | type[OneClass]:
  """Registers a benchmark of a user's arrays as ``config.dataset = name`` in this process.

  Args:
    train, test: (images, labels): images uint8 or float in [0, 1], [N, H, W],
      [N, H, W, 1] or [N, H, W, 3]; labels integers [N].
    tasks: each task's labels, in training order, e.g. [[0, 1], [2, 3]]; every
      label of train and test in exactly one task.
    kind: "class_il" (class-incremental; the only kind so far).
    name: the benchmark's config name; a built-in benchmark's name is refused,
      an earlier ``from_arrays`` benchmark of that name is replaced.
    protocol: "split" (each task's images reshuffled every epoch, as Seq-MNIST) or
      "dgm" (one class a task under DGM's protocol, ``ArrayOneClass``: what the
      dgm and dgm_joint methods train on).

  Returns:
    The benchmark class (its ``classes``: the user's label of each class, in the
    renumbered order that a method's logits follow).

  Raises:
    DataError: one line naming what is wrong (shapes, dtypes, ranges, a label
      outside every task, overlapping tasks, a class without training images).
  """
  if kind not in KINDS:
    raise DataError(f"unknown kind {kind!r}: from_arrays builds class_il benchmarks")
  if protocol not in PROTOCOLS:
    raise DataError(f"unknown protocol {protocol!r}: use split or dgm")
  existing = REGISTRY.get(name)
  if (
    not isinstance(name, str)
    or not name
    or (existing and not issubclass(existing, tuple(PROTOCOLS.values())))
  ):
    raise DataError(
      f"name {name!r} is taken or empty: choose another (built-in: {sorted(REGISTRY)})"
    )
  (train_x, train_y), (test_x, test_y) = train, test
  grey = np.ndim(train_x) == 3 or np.shape(train_x)[-1] == 1
  train_x, test_x = images("train", train_x), images("test", test_x)
  if train_x.shape[1:] != test_x.shape[1:]:
    raise DataError(f"train images are {train_x.shape[1:3]}, test images {test_x.shape[1:3]}")
  train_y = _labels("train", train_y, len(train_x))
  test_y = _labels("test", test_y, len(test_x))
  order, sizes = _task_sizes(tasks)
  if protocol == "dgm" and set(sizes) != {1}:
    raise DataError(f"protocol 'dgm' trains one class a task; got tasks of {sorted(set(sizes))}")
  renumber = {c: i for i, c in enumerate(order)}
  for where, y in (("train", train_y), ("test", test_y)):
    outside = sorted(set(np.unique(y).tolist()) - set(renumber))
    if outside:
      raise DataError(
        f"{where} labels {outside[:10]} are in no task: add them to a task or drop their images"
      )
  missing = sorted(set(order) - set(np.unique(train_y).tolist()))
  if missing:
    raise DataError(f"labels {missing[:10]} of the tasks have no training images")
  lookup = np.vectorize(renumber.__getitem__, otypes=[np.int32])
  sources.register_arrays(
    sources.ArrayDataset(name, train_x, lookup(train_y), test_x, lookup(test_y), len(order))
  )
  fields = dict(name=name, dataset=name, kind=KINDS[kind], num_tasks=len(sizes))
  if protocol == "dgm":
    fields.update(classes_per_task=1, channels=1 if grey else 3)
  else:
    # Tasks of unequal sizes have no classes_per_task (DGM reads it; it refuses splits).
    fields.update(classes_per_task=sizes[0] if len(set(sizes)) == 1 else None, sizes=sizes)
  fields["classes"] = np.asarray(order)
  benchmark = type(f"Arrays_{name}", (PROTOCOLS[protocol],), fields)
  REGISTRY[name] = benchmark
  return benchmark
