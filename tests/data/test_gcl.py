"""MNIST-360 in the trainer: rotated batches, the single-pass plan, GCL results."""

import jax
import numpy as np
import pytest

from dynamos_jax import chunks, trainer
from dynamos_jax.data import mnist360


@pytest.fixture
def gcl_config(tiny_config, use_tiny_dataset):
  dataset = use_tiny_dataset(per_class=40, test_per_class=6)
  tiny_config.dataset = "mnist-360"
  tiny_config.epochs = 1
  tiny_config.batch_size = 6
  tiny_config.minibatch_size = 6
  return tiny_config, dataset


def test_stream_plan_and_test_draws(gcl_config):
  config, dataset = gcl_config
  exp = trainer.Experiment(config)
  data = exp.benchmark.epoch_data(0, 0)
  real = np.asarray(data.mask).sum()
  # Each class 0-8 is drawn as often as it has training images; digit 9 never.
  assert real == 9 * 40
  assert 9 not in set(
    np.asarray(dataset.train_labels)[np.asarray(data.order)[np.asarray(data.mask)]]
  )
  assert sum(c.stop - c.start for c in exp.chunks) == data.order.shape[0]
  assert exp.chunks[0].phase == "warmup" and exp.chunks[-1].ends_task
  images, labels = exp.benchmark.test_set()
  assert images.shape == (9 * 6, 8, 8, 3) and set(labels) == set(range(9))
  assert exp.method.model.num_classes == 9


def test_step_trains_on_rotated_images_and_stores_them(gcl_config):
  config, _ = gcl_config
  config.method = "er"  # a plain reservoir stores every sample: easy to check
  exp = trainer.Experiment(config)
  data = exp.benchmark.epoch_data(0, 0)
  row = int(np.argmax(np.asarray(data.mask).all(1)))  # a full batch
  step = jax.jit(chunks.make_train_step(exp.method, "main"))
  new, _ = step(exp.initial_state(), data, np.int32(row))
  expected = mnist360.rotate_with_params(data.images[data.order[row]], data.rotation[row])
  np.testing.assert_array_equal(new.learner.buffer.images[:6], expected)
  assert not np.array_equal(expected, data.images[data.order[row]])  # rotation did something


def test_run_reports_gcl_accuracy_and_joint_shuffles_the_whole_stream(gcl_config, tmp_path):
  config, _ = gcl_config
  config.train.max_steps_per_task = 12
  results = trainer.train_and_evaluate(config, str(tmp_path / "dynamos"))
  assert set(results["metrics"]) == {"gcl"} and "class_il" not in results
  assert results["gcl"]["accuracy"] == results["metrics"]["gcl"]["accuracy"]
  assert 0.0 <= results["gcl"]["accuracy"] <= 100.0 and results["train"]["steps"] == 12

  config.method = "joint"
  exp = trainer.Experiment(config)
  data = exp.benchmark.epoch_data(0, 0)
  mask = np.asarray(data.mask)
  assert mask.sum() == 9 * 40 and mask[:-1].all()  # full batches, only the last partial
  labels = np.asarray(exp.benchmark.data.host.train_labels)[np.asarray(data.order)[:5]]
  assert len(set(labels.ravel())) > 2  # not the pair-by-pair order of the stream


def test_mnist360_needs_a_single_pass(gcl_config):
  from dynamos_jax import config as config_lib
  from dynamos_jax.errors import ConfigError

  config, _ = gcl_config
  config.epochs = 2
  with pytest.raises(ConfigError, match="single pass"):
    config_lib.validate(config)
