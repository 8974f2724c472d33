"""Evaluation: class-IL vs task-IL scoring, the untrained row, the forward-transfer wiring."""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import accuracy as evaluation
from dynamos_jax import trainer
from dynamos_jax.data.streams import ClassIncremental
from dynamos_jax.experiment import Experiment


def test_task_il_masks_the_other_tasks_classes():
  stream = ClassIncremental(num_tasks=2, classes_per_task=2)
  # Samples of both tasks interleaved; per sample: (label, logits, class-IL right, task-IL right).
  cases = [
    (0, [3, 1, 5, 0], False, True),  # class 2 wins overall; within {0, 1}, class 0
    (3, [9, 0, 1, 2], False, True),  # class 0 wins overall; within {2, 3}, class 3
    (1, [0, 4, 1, 2], True, True),
    (2, [0, 8, 1, 0], False, True),  # class 1 overall; within {2, 3}, class 2
    (1, [2, 1, 0, 9], False, False),  # within {0, 1}, class 0
    (2, [0, 0, 1, 3], False, False),  # within {2, 3}, class 3
    (0, [1, 2, 0, 0], False, False),
  ]
  labels = np.array([c[0] for c in cases])
  logits = np.array([c[1] for c in cases], np.float32)
  class_il, task_il = evaluation.task_accuracies(logits, labels, stream, range(2))
  # Task 1: 4 samples, 1 right class-IL, 2 task-IL; task 2: 3 samples, 0 and 2.
  np.testing.assert_allclose(class_il, [25.0, 0.0])
  np.testing.assert_allclose(task_il, [50.0, 200.0 / 3])
  # A subset of tasks scores only those.
  np.testing.assert_allclose(
    evaluation.task_accuracies(logits, labels, stream, range(1, 2)), [[0.0], [200.0 / 3]]
  )


def _np_accuracies(logits, labels, num_tasks=5):
  """Per-task class-IL and task-IL accuracy (%) of ``logits``, written out in NumPy."""
  class_il, task_il = [], []
  for t in range(num_tasks):
    rows = labels // 2 == t
    z, y = logits[rows], labels[rows]
    class_il.append(100.0 * np.mean(z.argmax(-1) == y))
    task_il.append(100.0 * np.mean(2 * t + z[:, 2 * t : 2 * t + 2].argmax(-1) == y))
  return class_il, task_il


def test_untrained_row_and_before_entries(tiny_data, tiny_config, tmp_path, monkeypatch):
  """Row 0 is the untrained model without agents (its phase is the warm-up), and
  before[j] is the evaluation right before task j, on task j (forward transfer)."""
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 4  # task 1: 3 warm-up steps, then 1 gated
  calls = []
  evaluate = Experiment.evaluate

  def spy(self, state, phase):
    # Each evaluation's accuracies shifted by 1000 x its index, so every entry of
    # results says which evaluation it came from; the first is the real one.
    k = len(calls)
    scores = {p: [a + 1000.0 * k for a in v] for p, v in evaluate(self, state, phase).items()}
    calls.append((phase, scores))
    return scores

  monkeypatch.setattr(Experiment, "evaluate", spy)
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))

  # Evaluations: untrained (in the warm-up's phase), then after each of the 5 tasks.
  assert [phase for phase, _ in calls] == ["warmup"] + ["main"] * 5
  for p in ("class_il", "task_il"):
    matrix, before = results[p]["matrix"], results[p]["before"]
    assert len(matrix) == 6 and len(before) == 5
    assert matrix[0] == calls[0][1][p]  # row 0: every task, untrained
    for i in range(1, 6):
      assert matrix[i] == [a if t < i else None for t, a in enumerate(calls[i][1][p])]
    # before[j]: task j's accuracy from the evaluation right before training it.
    assert before == [calls[j][1][p][j] for j in range(5)]
    fwt = np.mean([before[j] - matrix[0][j] for j in range(1, 5)])
    np.testing.assert_allclose(results["metrics"][p]["forward_transfer"], fwt)

  # Row 0 recomputed: the initial state, eval mode, agents off (as in the warm-up).
  exp = Experiment(tiny_config)
  learner = exp.initial_state().learner
  images = jnp.asarray(tiny_data.test_images)
  variables = {"params": learner.params, "batch_stats": learner.batch_stats}
  apply = jax.jit(lambda v, x, mode: exp.method.model.apply(v, x, mode, False)[0], static_argnums=2)
  off = np.asarray(apply(variables, images, "off"))
  class_il, task_il = _np_accuracies(off, tiny_data.test_labels)
  np.testing.assert_allclose(results["class_il"]["matrix"][0], class_il, atol=1e-9)
  np.testing.assert_allclose(results["task_il"]["matrix"][0], task_il, atol=1e-9)
  # With the agents thresholded the untrained logits differ: the phase matters.
  assert not np.allclose(off, np.asarray(apply(variables, images, "threshold")), atol=1e-4)
