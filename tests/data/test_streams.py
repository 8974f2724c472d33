"""Class-incremental splits and padded, shuffled epochs."""

import jax
import numpy as np
import pytest

from dynamos_jax.data.streams import ClassIncremental, epoch_batches, num_batches


def test_tasks_are_class_pairs_in_natural_order():
  stream = ClassIncremental()
  labels = np.array([3, 0, 9, 1, 2, 8, 0])
  assert [list(stream.task_classes(t)) for t in range(5)] == [
    [0, 1],
    [2, 3],
    [4, 5],
    [6, 7],
    [8, 9],
  ]
  np.testing.assert_array_equal(stream.task_indices(labels, 0), [1, 3, 6])  # file order
  np.testing.assert_array_equal(stream.task_indices(labels, 4), [2, 5])
  np.testing.assert_array_equal(stream.task_of_label(labels), [1, 0, 4, 0, 1, 4, 0])


def test_epoch_keeps_the_last_partial_batch_and_pads_it():
  indices = np.arange(100, 123)  # 23 samples at batch 5: 4 full batches + 3
  order, mask = epoch_batches(jax.random.key(0), indices, 5, pad_to=7)
  assert num_batches(23, 5) == 5 and order.shape == mask.shape == (7, 5)
  assert mask.sum() == 23 and mask[:4].all() and mask[4].sum() == 3 and not mask[5:].any()
  assert sorted(order[mask]) == list(indices)  # every sample exactly once
  with pytest.raises(ValueError):
    epoch_batches(jax.random.key(0), indices, 5, pad_to=4)


def test_shuffle_follows_the_key():
  indices = np.arange(50)
  a, _ = epoch_batches(jax.random.key(1), indices, 10)
  b, _ = epoch_batches(jax.random.key(1), indices, 10)
  c, _ = epoch_batches(jax.random.key(2), indices, 10)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert not np.array_equal(a.ravel(), indices)  # actually shuffled
