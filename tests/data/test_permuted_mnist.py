"""Permuted MNIST: permutations from the seed, permuted batches and test sets, any method."""

import numpy as np

from dynamos_jax import trainer


def _exp(config, **changes):
  config.dataset = "permuted-mnist"
  config.update(changes)
  return trainer.Experiment(config)


def test_permutations_and_permuted_batches(tiny_data, tiny_config):
  exp = _exp(tiny_config, method="sgd")
  perms = exp.benchmark.permutations
  assert perms.shape == (5, 64)
  np.testing.assert_array_equal(perms[0], np.arange(64))  # Task 1 is plain MNIST.
  assert all(sorted(p) == list(range(64)) for p in perms)
  assert len({p.tobytes() for p in perms}) == 5
  # Same seed, another method: the same permutations; another seed: others.
  np.testing.assert_array_equal(_exp(tiny_config, method="er").benchmark.permutations, perms)
  assert not np.array_equal(_exp(tiny_config, seed=1).benchmark.permutations[1], perms[1])

  n = len(tiny_data.train_labels)
  data = exp.benchmark.epoch_data(2, 0)
  batch = data.batch(0)
  index = np.asarray(data.order[0]) - 2 * n  # Task 3's samples: 2 * N + i.
  assert batch.images.shape == (tiny_config.batch_size, 8, 8, 1) and int(batch.task) == 2
  want = tiny_data.train_images[index][..., 0].reshape(len(index), -1)[:, perms[2]]
  np.testing.assert_array_equal(np.asarray(batch.images).reshape(len(index), -1), want)
  np.testing.assert_array_equal(batch.labels, tiny_data.train_labels[index])
  # Every task trains on the whole training set.
  assert exp.benchmark.task_data(4).size == n
  hook_batch = exp.benchmark.task_data(1).batches(7).batch(0)
  np.testing.assert_array_equal(
    np.asarray(hook_batch.images).reshape(7, -1),
    tiny_data.train_images[:7][..., 0].reshape(7, -1)[:, perms[1]],
  )


def test_runs_end_to_end_and_joint_mixes_the_tasks(tiny_data, tiny_config, tmp_path):
  tiny_config.dataset = "permuted-mnist"
  tiny_config.method = "er"
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path / "er"))
  assert results["class_il"]["matrix"] == results["task_il"]["matrix"]
  assert len(results["class_il"]["matrix"]) == 6 and results["train"]["steps"] == 15
  exp = _exp(tiny_config, method="joint")
  n = len(tiny_data.train_labels)
  assert exp.benchmark.batches == [-(-5 * n // tiny_config.batch_size)]
  order = np.asarray(exp.benchmark.epoch_data(0, 0).order)[:4].ravel()
  assert len(set(order // n)) > 1  # Batches mix the tasks.
