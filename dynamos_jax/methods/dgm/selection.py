"""DGM's "best validation" report, ``dgm.selection=best_valid``.

See docs/dgm.md#evaluation-and-model-selection.

What the authors' code does, and this module with it: within each task,
after every epoch e (0-based) with e % ``dgm.eval_every`` == 0 and once
more after the task's last epoch, D (eval mode) is scored on the real
held-out training images of the classes seen so far (the benchmark's
``validation_set()``) and on their test images; the task's reported figure
is the test accuracy of the evaluation whose validation average over the
seen classes was the highest (the first one on a tie).

A report only, by decision (as the code: D is not reverted to that epoch).
The accuracy matrix of results.json stays the final model's, D after the
task's last step is the one evaluated, carried into the next task (which
re-initialises it anyway with ``dgm.reinit_d``) and checkpointed. Reverting
D would make the matrix row a model selected on real held-out images of
every past class, which the class-incremental protocol does not give a
learner (docs/dgm.md#evaluation-and-model-selection); the option reports that
number beside the final one.

The records live in the state (``DGMState.selection``: [T] best validation
average, [T] its epoch (1-based, 0: none yet), [T, K] the per-class test
accuracies then), so every seed keeps its own and a resumed run restores
them with its checkpoint; they are updated by the ``end_epoch`` hook.
Accuracies are exact per class (correct / samples, %), averaged over the
seen classes (docs/dgm.md#evaluation-and-model-selection); the reference
averages per-batch accuracies within a class, its last partial batch weighted
as a full one (at MNIST's ~900 held-out images per class and batches of 64:
1/15 of the weight on the last few images). Its first evaluation must beat 0 %
to count (``best = 0``, a strict ``<``); here the first one always counts.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy as evaluation
from dynamos_jax.methods.dgm import statistics as d_statistics

NONE_YET = -1.0  # the validation average a task has before its first evaluation


class Data:
  """The seed's benchmark, held by the method for its evaluations (``DGM.data``).

  Every ``Data`` compares equal (and hashes alike): the held-out split is the
  seed's data, not a setting, so methods that differ only in it are the same
  method to jit's cache and to a sweep's comparison of its members' fields.
  """

  def __init__(self, benchmark):
    self.benchmark = benchmark

  def __eq__(self, other):
    return isinstance(other, Data)

  def __hash__(self):
    return hash(Data)


def empty(selection: str, num_tasks: int, num_classes: int) -> dict:
  """The state's records: {} for ``final`` (no leaves: a final run's checkpoint layout is
  unchanged), else valid float32 [T], epoch int32 [T], test float32 [T, K]."""
  if selection != "best_valid":
    return {}
  return {
    "valid": jnp.full((num_tasks,), NONE_YET, jnp.float32),
    "epoch": jnp.zeros((num_tasks,), jnp.int32),
    "test": jnp.zeros((num_tasks, num_classes), jnp.float32),
  }


def due(method, state) -> int | None:
  """The 1-based epoch that just ended if the code evaluates after it, else None.

  Called after an epoch's last step: ``step_in_task`` steps of ``batches``
  per epoch are done. The task's last epoch is the planned one, or the one
  cut short by ``train.max_steps_per_task``.
  """
  steps, batches = int(state.step_in_task), int(state.batches)
  epoch = (steps - 1) // batches  # 0-based
  budget = batches * method.epochs
  if method.max_steps:
    budget = min(budget, method.max_steps)
  if epoch % method.eval_every == 0 or steps >= budget:
    return epoch + 1
  return None


@functools.partial(jax.jit, static_argnames="method")
def _logits(state, images, *, method):
  return method.predict(state, images, None, "main")


def seen_accuracies(
  method, state, images: jax.Array, labels: np.ndarray, classes: int
) -> np.ndarray:
  """float64 [classes] accuracy (%) of each class c < ``classes`` on its rows of ``images``
  [N, 32, 32, C] / ``labels`` [N] (unseen classes' rows are not evaluated)."""
  labels = np.asarray(labels)
  rows = np.flatnonzero(labels < classes)
  logits = evaluation.predict_logits(
    lambda x: _logits(state, x, method=method), images[rows], method.eval_batch_size
  )
  y = labels[rows]
  correct = np.argmax(logits, -1) == y
  return np.array([100.0 * np.mean(correct[y == c]) for c in range(classes)])


def end_epoch(method, state, task):
  """The ``end_epoch`` hook: evaluates when ``due`` and keeps the best evaluation so far."""
  epoch = due(method, state)
  if epoch is None:
    return state
  state = d_statistics.refresh(method, state, task)
  t, benchmark = task.index, method.data.benchmark
  classes = t + 1  # one class per task (dgm/config.validate): classes 0..t are seen
  valid = np.mean(seen_accuracies(method, state, *benchmark.validation_set(), classes))
  # Compared as stored (float32): a tie with the best so far, e.g. 200 / 3 %, stays a tie.
  valid = float(np.float32(valid))
  records = jax.tree.map(jnp.asarray, state.selection)
  if not valid > float(records["valid"][t]):
    return state
  test = seen_accuracies(method, state, *benchmark.test_set(), classes)
  row = jnp.zeros(records["test"].shape[1:], jnp.float32).at[:classes].set(test)
  return state.replace(
    selection={
      "valid": records["valid"].at[t].set(valid),
      "epoch": records["epoch"].at[t].set(epoch),
      "test": records["test"].at[t].set(row),
    }
  )


def task_record(state, t: int) -> dict[str, np.ndarray]:
  """Task t's record as arrays (``after_task``'s): best_valid [], best_valid_epoch [],
  best_valid_test [t + 1] (the seen classes' test accuracies, %)."""
  s = jax.device_get(state.selection)
  return {
    "best_valid": np.float32(s["valid"][t]),
    "best_valid_epoch": np.int32(s["epoch"][t]),
    "best_valid_test": np.asarray(s["test"][t][: t + 1], np.float32),
  }


def summary(state, tasks: int) -> list[dict]:
  """JSON-ready records of the first ``tasks`` tasks: task (1-based), valid (the best
  validation average), epoch, test (the seen classes' test accuracies then) and
  test_average (A_t as the code reports it)."""
  out = []
  for t in range(tasks):
    r = task_record(state, t)
    test = [float(v) for v in r["best_valid_test"]]
    out.append(
      {
        "task": t + 1,
        "valid": float(r["best_valid"]),
        "epoch": int(r["best_valid_epoch"]),
        "test": test,
        "test_average": float(np.mean(test)),
      }
    )
  return out
