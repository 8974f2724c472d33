"""Evaluation: a method's jitted predictions, accuracies, the accuracy-matrix rows.

The test set sits on the device; one jitted eval-mode forward per fixed-size
batch gives logits, and accuracies are counted on the host. What is scored
(class-IL, task-IL, GCL) is the benchmark's; how to predict is the method's.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.data.streams import ClassIncremental


class Predictors:
  """A method's ``predict``, jitted once per phase; shared by the seeds of a run.

  Equal methods share their compiled predictions within a process (``_predict`` takes
  the method as a static argument); a method with an unhashable field gets its own.
  """

  def __init__(self, method):
    self.method = method
    try:
      hash(method)
      self._jitted = None
    except TypeError:
      self._jitted = {}

  def __call__(self, state, phase: str) -> Callable:
    """``(images, task) -> logits`` of the method state ``state`` in ``phase``."""
    if self._jitted is None:
      return lambda images, task: _predict(state, images, task, method=self.method, phase=phase)
    if phase not in self._jitted:
      self._jitted[phase] = jax.jit(
        lambda s, images, task: self.method.predict(s, images, task, phase)
      )
    jitted = self._jitted[phase]
    return lambda images, task: jitted(state, images, task)


@functools.partial(jax.jit, static_argnames=("method", "phase"))
def _predict(state, images, task, *, method, phase):
  return method.predict(state, images, task, phase)


def seen_row(accuracies: list[float], seen: int) -> list[float | None]:
  """The accuracy-matrix row after ``seen`` tasks: None for unseen tasks (row 0: all)."""
  if seen == 0:
    return list(accuracies)
  return [a if t < seen else None for t, a in enumerate(accuracies)]


def predict_logits(predict, images: jax.Array, batch_size: int) -> np.ndarray:
  """Logits [N, K] of ``images`` [N, H, W, 3] through ``predict``, in fixed-size batches."""
  n = images.shape[0]
  out = []
  for start in range(0, n, batch_size):
    chunk = images[start : start + batch_size]
    pad = batch_size - chunk.shape[0]
    if pad:  # Keep one shape, hence one compile; BN uses running stats, so padding is inert.
      chunk = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    out.append(predict(chunk)[: batch_size - pad])
  return np.concatenate(jax.device_get(out))


def task_accuracies(
  logits: np.ndarray, labels: np.ndarray, stream: ClassIncremental, tasks: range
) -> tuple[list[float], list[float]]:
  """Class-IL and task-IL accuracy (percent) on each task in ``tasks``.

  Task-IL masks the logits of classes outside the test sample's task
  (docs/dynamos.md#benchmarks-and-protocols).
  """
  task_of = stream.task_of_label(labels)
  class_il, task_il = [], []
  for t in tasks:
    rows = task_of == t
    z, y = logits[rows], labels[rows]
    class_il.append(100.0 * float(np.mean(np.argmax(z, -1) == y)))
    classes = stream.task_classes(t)
    task_il.append(100.0 * float(np.mean(classes[np.argmax(z[:, classes], -1)] == y)))
  return class_il, task_il
