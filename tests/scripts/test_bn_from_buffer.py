"""reproduce/bn_from_buffer.py: the re-estimated BN statistics and the per-class accuracy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_script

bn_from_buffer = load_script("bn_from_buffer", "reproduce", "bn_from_buffer.py")


class _Toy(nn.Module):
  """The ResNet's call signature (images, mode, train): one BN (PyTorch momentum) and a
  linear head on the flattened image."""

  @nn.compact
  def __call__(self, x, mode, train):
    del mode
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.Dense(3)(h.reshape(len(x), -1)), None


def test_reestimated_statistics_are_the_buffers_and_the_parameters_untouched():
  rng = np.random.default_rng(1)
  images = rng.normal(2.0, 3.0, (8, 2, 2, 1)).astype(np.float32)
  model = _Toy()
  variables = model.init(jax.random.key(0), jnp.asarray(images), "off", False)
  params = variables["params"]
  # batch = every image: each draw is a permutation, so every forward sees the buffer's
  # own statistics and the running ones converge to them (0.9 ** 200 of the start left).
  stats = bn_from_buffer.reestimate(
    model, params, variables["batch_stats"], images, "off", forwards=200, batch=8
  )
  bn = stats["BatchNorm_0"]
  np.testing.assert_allclose(bn["mean"], images.mean((0, 1, 2)), rtol=1e-4)
  np.testing.assert_allclose(bn["var"], images.var((0, 1, 2)), rtol=1e-4)
  # One forward: momentum 0.1 towards the batch, from the start (mean 0, var 1).
  one = bn_from_buffer.reestimate(
    model, params, variables["batch_stats"], images, "off", forwards=1, batch=8
  )["BatchNorm_0"]
  np.testing.assert_allclose(one["mean"], 0.1 * images.mean((0, 1, 2)), rtol=1e-4)
  np.testing.assert_allclose(one["var"], 0.9 + 0.1 * images.var((0, 1, 2)), rtol=1e-4)


def test_per_class_accuracy_by_hand():
  class _Fixed(nn.Module):
    """Predicts class round(pixel 0) (logits one-hot), whatever the statistics."""

    @nn.compact
    def __call__(self, x, mode, train):
      return jax.nn.one_hot(jnp.round(x[:, 0, 0, 0]).astype(jnp.int32), 3), None

  images = np.array([0, 1, 1, 2, 0, 0], np.float32).reshape(6, 1, 1, 1)
  labels = np.array([0, 1, 2, 2, 1, 0])
  acc, classes = bn_from_buffer.per_class(_Fixed(), {}, {}, images, labels, "off", 3, batch_size=4)
  assert acc == pytest.approx(100 * 4 / 6)
  assert classes == [100.0, 50.0, 50.0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
  assert bn_from_buffer.main([f"--workdir={tmp_path}", "--forwards=0"]) == 2
  assert "--forwards and --batch must be >= 1" in capsys.readouterr().err
  assert bn_from_buffer.main([f"--workdir={tmp_path}"]) == 2
  assert "is --workdir the directory of a run?" in capsys.readouterr().err
