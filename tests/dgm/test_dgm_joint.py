"""JT (dgm_joint): DGM's discriminator as a plain classifier on all real data at once."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamos_jax import methods, trainer
from dynamos_jax.config import base_config, validate
from dynamos_jax.data.streams import Batch
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.dgm.discriminator import Discriminator, to_unit


def _config():
  c = base_config()
  c.method, c.dataset, c.data.source = "dgm_joint", "dgm-mnist", "bundled"
  c.dgm.ndf = 4
  c.batch_size, c.epochs = 16, 12
  c.train.chunk_size, c.train.progress, c.train.eval_batch_size = 50, False, 64
  return c


def test_joint_learns_a_separable_dataset(use_tiny_dataset, tmp_path):
  """The tiny classes (a bright row each) are separable: JT ends far above chance (10 %)."""
  use_tiny_dataset(per_class=12, test_per_class=4, size=28)
  config = _config()
  validate(config)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  matrix = results["class_il"]["matrix"]
  assert len(matrix) == 2 and None not in matrix[1]  # joint: untrained, then all classes
  # 12 per class - int(0.15 * 12) = 11 train -> 110 samples, ceil(110 / 16) = 7 steps an epoch.
  assert results["train"]["steps"] == 7 * 12
  assert np.mean(matrix[1]) >= 90.0, matrix[1]
  log = results["log"]
  assert log[-1]["ce"] < log[0]["ce"]


def test_step_is_adam_on_the_aux_cross_entropy():
  """One step = Adam(lr_d, beta1, beta2) on CE of D's aux logits, padding rows ignored."""
  config = _config()
  config.dgm.lr_d, config.dgm.beta1 = 1e-3, 0.3
  method = methods.REGISTRY["dgm_joint"].from_config(config, type("B", (), {"num_classes": 10})())
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (6, 32, 32, 1)), jnp.uint8)
  labels = jnp.asarray([0, 3, 3, 9, 1, 1], jnp.int32)
  mask = jnp.asarray([True] * 4 + [False] * 2)
  example = Batch(images[:2], labels[:2], mask[:2])
  state = method.init(jax.random.key(0), example, None)
  new, metrics = method.step(state, Batch(images, labels, mask, 0), jax.random.key(1), "main")

  model = Discriminator(10, 4)

  def loss(params):  # Written out: the four real rows only.
    (_, z), _ = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      to_unit(images[:4]),
      train=True,
      mutable=["batch_stats"],
    )
    logp = jax.nn.log_softmax(z)
    return -jnp.mean(logp[jnp.arange(4), labels[:4]])

  grads = jax.grad(loss)(state.params)
  # Adam's first step moves every parameter by lr * g / (|g| + eps) (bias-corrected).
  expected = jax.tree.map(lambda p, g: p - 1e-3 * g / (jnp.abs(g) + 1e-8), state.params, grads)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=2e-6)
  np.testing.assert_allclose(metrics["loss"], loss(state.params), rtol=1e-5)
  assert np.all(
    np.asarray(new.params["critic"]["kernel"]) == np.asarray(state.params["critic"]["kernel"])
  )  # no gradient to the critic
  assert isinstance(new.opt_state[0], optax.ScaleByAdamState)
  assert methods.REGISTRY["dgm_joint"].joint


def test_bad_input_is_one_line():
  config = _config()
  config.dgm.lr_d = 0.0
  with pytest.raises(ConfigError, match="dgm.lr_d must be > 0"):
    validate(config)
  config = _config()
  config.dataset = "permuted-mnist"
  with pytest.raises(ConfigError, match="class-incremental"):
    validate(config)
