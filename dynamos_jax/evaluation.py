"""Class-IL and task-IL accuracy of a network on the test sets of the tasks.

The whole test set sits on the device; one jitted forward per fixed-size
batch (eval mode: BN running statistics, thresholded or disabled gates) gives
logits, and accuracies are counted on the host.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.data.streams import ClassIncremental


def make_predict(model, mode: str):
  """A jitted eval-mode forward ``(variables, images [B, H, W, 3]) -> logits [B, K]``.

  ``mode`` is ``threshold`` (deterministic gates) or ``off`` (no agents).
  """

  @jax.jit
  def predict(variables, images):
    logits, _ = model.apply(variables, images, mode, False)
    return logits

  return predict


def predict_logits(predict, variables, images: jax.Array, batch_size: int) -> np.ndarray:
  """Logits [N, K] of ``images`` [N, H, W, 3] through ``predict``, in fixed-size batches."""
  n = images.shape[0]
  out = []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - chunk.shape[0]
    if pad:  # Keep one shape, hence one compile; BN uses running stats, so padding is inert.
      chunk = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    out.append(predict(variables, chunk)[:batch_size - pad])
  return np.concatenate(jax.device_get(out))


def task_accuracies(logits: np.ndarray, labels: np.ndarray, stream: ClassIncremental,
                    tasks: range) -> tuple[list[float], list[float]]:
  """Class-IL and task-IL accuracy (percent) on each task in ``tasks``.

  Task-IL masks the logits of classes outside the test sample's task (spec 10.4).
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
