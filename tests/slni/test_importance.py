"""MAS and EWC importance and SLNI's neuron importance against sample-by-sample loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dynamos_jax.data.streams import EpochData
from dynamos_jax.methods.slni import importance
from dynamos_jax.methods.slni.mlp import MLP

MODEL = MLP(8)
X = jax.random.randint(jax.random.key(1), (10, 4, 4, 1), 0, 256).astype(jnp.uint8)
Y = jax.random.randint(jax.random.key(2), (10,), 0, 10)
PARAMS = MODEL.init(jax.random.key(0), X[:2])["params"]
# The task's 10 samples in fixed order, batches of 4: the last batch has 2 real rows.
ORDER = jnp.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
MASK = jnp.arange(12).reshape(3, 4) < 10
DATA = EpochData(X, Y, ORDER, MASK, jnp.int32(0))


def forward(params, images, probes):
  logits, aux = MODEL.apply({"params": params}, images, probes)
  return logits, aux["pre"]


def _objective(params, x, y, kind, probes=None):
  logits, _ = forward(params, x, probes)
  if kind == "mas":
    return jnp.sum(logits**2)
  return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, y))


@pytest.mark.parametrize("kind", importance.OBJECTIVES)
def test_estimate_equals_a_loop_over_batches_and_samples(kind):
  omega, alpha = jax.jit(importance.estimate, static_argnums=(0, 3))(forward, PARAMS, DATA, kind)
  # Omega: per real batch (no padding), |g| or g^2 of the batch-summed objective; / N.
  want = jax.tree.map(jnp.zeros_like, PARAMS)
  for rows in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9]):
    rows = jnp.array(rows)
    g = jax.grad(_objective)(PARAMS, X[rows], Y[rows], kind)
    want = jax.tree.map(lambda w, g: w + (jnp.abs(g) if kind == "mas" else g**2), want, g)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b / 10, rtol=1e-4, atol=1e-7), omega, want
  )
  # alpha: per sample |dJ/dz|, summed, / N.
  sums = [np.zeros(8), np.zeros(8)]
  for m in range(10):
    probes = (jnp.zeros((1, 8)), jnp.zeros((1, 8)))
    g = jax.grad(lambda p: _objective(PARAMS, X[m : m + 1], Y[m : m + 1], kind, p))(probes)
    sums = [s + np.abs(np.asarray(gl[0])) for s, gl in zip(sums, g)]
  for got, s in zip(alpha, sums):
    np.testing.assert_allclose(got, s / 10, rtol=1e-4, atol=1e-7)
  assert all(float(jnp.sum(a)) > 0 for a in alpha)


def test_consolidate_sums_omega_and_sums_or_averages_alpha():
  state = importance.Consolidation.empty(PARAMS, (8, 8))
  ones = jax.tree.map(jnp.ones_like, PARAMS)
  a1, a2 = (jnp.full(8, 2.0), jnp.full(8, 4.0)), (jnp.full(8, 6.0), jnp.full(8, 0.0))
  shifted = jax.tree.map(lambda p: p + 1.0, PARAMS)
  summed = importance.consolidate(
    importance.consolidate(state, ones, a1, PARAMS, False), ones, a2, shifted, False
  )
  averaged = importance.consolidate(
    importance.consolidate(state, ones, a1, PARAMS, True), ones, a2, shifted, True
  )
  assert int(summed.tasks) == 2
  jax.tree.map(lambda o: np.testing.assert_array_equal(o, 2.0), summed.omega)
  np.testing.assert_array_equal(summed.alpha[0], 8.0)
  np.testing.assert_array_equal(averaged.alpha[0], 4.0)
  np.testing.assert_array_equal(averaged.alpha[1], 2.0)
  # The penalty pulls towards the latest anchor, weighted by Omega.
  assert float(importance.penalty(summed, shifted)) == 0.0
  size = sum(p.size for p in jax.tree.leaves(PARAMS))
  assert float(importance.penalty(summed, PARAMS)) == pytest.approx(2.0 * size)
  with pytest.raises(ValueError, match="unknown importance"):
    importance.estimate(forward, PARAMS, DATA, "fisher")
