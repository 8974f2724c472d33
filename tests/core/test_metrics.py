"""Continual-learning metrics on hand-made accuracy matrices."""

import pytest

from dynamos_jax import metrics

# Three tasks. Row 0: untrained; row i: after task i; None: not yet seen.
MATRIX = [[10.0, 20.0, 30.0], [90.0, None, None], [70.0, 80.0, None], [60.0, 50.0, 95.0]]
BEFORE = [10.0, 5.0, 35.0]  # accuracy on task j just before training it


def test_final_average_is_the_mean_of_the_last_row():
  assert metrics.final_average(MATRIX) == pytest.approx((60 + 50 + 95) / 3)


def test_forgetting_takes_the_best_accuracy_after_learning():
  # Task 1: max(90, 70) - 60 = 30; task 2: 80 - 50 = 30.
  assert metrics.forgetting(MATRIX) == pytest.approx(30.0)
  # Best after learning is not the first row after learning it.
  m = [row[:] for row in MATRIX]
  m[1][0], m[2][0] = 70.0, 90.0
  assert metrics.forgetting(m) == pytest.approx(((90 - 60) + (80 - 50)) / 2)


def test_forgetting_counts_the_final_row_and_is_never_negative():
  # Issue 16's counter-example: a task that ends at its best has forgotten nothing.
  # Leaving the final row out of the max gave ((90 - 92) + (95 - 96)) / 2 = -1.5.
  m = [[10.0, 10.0, 10.0], [90.0, None, None], [80.0, 95.0, None], [92.0, 96.0, 97.0]]
  assert metrics.forgetting(m) == pytest.approx(0.0)
  m[3][0] = 85.0  # now task 1 lost 5 from its best (90)
  assert metrics.forgetting(m) == pytest.approx(2.5)


def test_backward_transfer_compares_with_the_accuracy_right_after_learning():
  # Task 1: 60 - 90 = -30; task 2: 50 - 80 = -30.
  assert metrics.backward_transfer(MATRIX) == pytest.approx(-30.0)
  m = [row[:] for row in MATRIX]
  m[3][0] = 95.0  # later tasks helped task 1: positive transfer
  assert metrics.backward_transfer(m) == pytest.approx(((95 - 90) + (50 - 80)) / 2)


def test_forward_transfer_compares_before_learning_with_the_untrained_model():
  # Task 2: 5 - 20 = -15; task 3: 35 - 30 = 5.
  assert metrics.forward_transfer(MATRIX, BEFORE) == pytest.approx(-5.0)


def test_joint_runs_and_single_tasks_have_no_sequential_metrics():
  joint = [[10.0, 20.0, 30.0], [90.0, 91.0, 92.0]]
  summary = metrics.summarize(joint, BEFORE[:1])
  assert summary["final_average"] == pytest.approx(91.0)
  assert summary["forgetting"] is None and summary["backward_transfer"] is None
  assert summary["forward_transfer"] is None


def test_a_row_missing_a_seen_task_is_an_error():
  m = [row[:] for row in MATRIX]
  m[2][0] = None
  with pytest.raises(ValueError, match="row 2"):
    metrics.forgetting(m)


def test_a_run_stopped_early_has_the_metrics_of_its_first_tasks():
  # train.max_tasks=2 of the three tasks: the rows after tasks 1 and 2, task 3 unseen.
  stopped = MATRIX[:3]
  assert metrics.forgetting(stopped) == pytest.approx(90.0 - 70.0)
  assert metrics.backward_transfer(stopped) == pytest.approx(70.0 - 90.0)
  assert metrics.forward_transfer(stopped, BEFORE) == pytest.approx(5.0 - 20.0)
  two_tasks = [row[:2] for row in stopped]
  assert metrics.summarize(stopped, BEFORE) == metrics.summarize(two_tasks, BEFORE[:2])
