"""The agents from moments (model.agent_moments) against the plain Flax layers.

``Agent(moments=True)`` computes pointwise conv -> BN -> pool from ``W
mean_hw(x)`` and ``W^T E[x x^T] W``. It must be the same function with the
same variables: equal outputs, BN running statistics and gradients within
float tolerance, train and eval mode, masked rows; and both must match an
independent float64 NumPy computation of the BN statistics.
"""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import methods
from dynamos_jax.config import sibling_config
from dynamos_jax.data import sources
from dynamos_jax.data.streams import Batch
from dynamos_jax.methods.dynamos.agent import Agent
from dynamos_jax.methods.dynamos.buffer import Replay

from conftest import ROOT

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.py")


def _close(a, b, rtol=2e-4):
  """Leafwise equal within ``rtol`` of each leaf's largest magnitude."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(np.abs(x).max(), np.abs(y).max(), 1e-12)
    np.testing.assert_allclose(x, y, rtol=0, atol=rtol * scale)


def _inputs(shape, seed=0):
  # A non-zero mean and uneven channel scales: the fast variance's cancellation is exercised.
  k1, k2 = jax.random.split(jax.random.key(seed))
  scales = jax.random.uniform(k2, (shape[-1],), minval=0.2, maxval=3.0)
  return jax.nn.relu(jax.random.normal(k1, shape) * scales + 0.7)


def _agents(features=32, reduction=4):
  return Agent(features, reduction, 0.15, False), Agent(features, reduction, 0.15, True)


@pytest.mark.parametrize("shape", [(6, 7, 7, 8), (5, 14, 14, 16)])
def test_agent_from_moments_equals_plain_layers(shape):
  x = _inputs(shape)
  mask = jnp.array([True, False, True, True, True, False][: shape[0]])[:, None, None, None]
  plain, moments = _agents()
  keys = {"params": jax.random.key(1), "gates": jax.random.key(2)}
  v_plain = plain.init(keys, x, "sample", True)
  v_moments = moments.init(keys, x, "sample", True)
  # One parameter tree, and init draws the same values.
  assert jax.tree.structure(v_plain) == jax.tree.structure(v_moments)
  for a, b in zip(jax.tree.leaves(v_plain), jax.tree.leaves(v_moments)):
    np.testing.assert_array_equal(a, b)
  # Non-trivial BN parameters and running statistics, so eval mode is tested too.
  params = jax.tree.map(
    lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), v_plain["params"]
  )
  stats = {"bn": {"mean": jnp.linspace(-0.5, 0.5, 32), "var": jnp.linspace(0.5, 2.0, 32)}}
  variables = {"params": params, "batch_stats": stats}

  def train_out(agent, params, x):
    out, upd = agent.apply(
      {"params": params, "batch_stats": stats},
      x,
      "sample",
      True,
      mask,
      rngs={"gates": jax.random.key(4)},
      mutable=["batch_stats"],
    )
    return out, upd["batch_stats"]

  (o_p, s_p), (o_m, s_m) = train_out(plain, params, x), train_out(moments, params, x)
  for k in ("attention", "probs", "log_prob"):
    _close(o_p[k], o_m[k])
  np.testing.assert_array_equal(o_p["actions"], o_m["actions"])
  _close(s_p, s_m, rtol=1e-5)
  # The running statistics moved (so their equality is not the init's).
  assert np.abs(np.asarray(s_m["bn"]["mean"]) - np.asarray(stats["bn"]["mean"])).max() > 1e-3

  for mode in ("threshold", "sample"):
    e_p = plain.apply(variables, x, mode, False, rngs={"gates": jax.random.key(5)})
    e_m = moments.apply(variables, x, mode, False, rngs={"gates": jax.random.key(5)})
    _close(e_p["attention"], e_m["attention"])
    np.testing.assert_array_equal(e_p["actions"], e_m["actions"])

  # Gradients w.r.t. every parameter and the input, through the batch statistics.
  def objective(agent):
    def f(params, x):
      out, new_stats = train_out(agent, params, x)
      weights = jnp.arange(1, 33, dtype=jnp.float32)
      return (
        jnp.sum(out["attention"] * weights)
        + jnp.sum(out["log_prob"])
        + jnp.sum(new_stats["bn"]["var"] * weights)
      )

    return jax.grad(f, argnums=(0, 1))

  g_p, g_m = objective(plain)(params, x), objective(moments)(params, x)
  _close(g_p, g_m, rtol=5e-4)
  assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(g_m))


def test_moments_match_numpy_batch_statistics():
  """Both layouts' running statistics and pooled BN output against float64 NumPy."""
  x = _inputs((4, 5, 5, 6), seed=7)
  rows = np.array([True, True, False, True])
  plain, moments = _agents(features=16)
  v = plain.init({"params": jax.random.key(0), "gates": jax.random.key(1)}, x, "sample", True)
  w = np.asarray(v["params"]["pointwise"]["kernel"], np.float64).reshape(6, 16)
  h = np.asarray(x, np.float64)[rows] @ w  # [n, H, W, 16]
  mu, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))  # biased, as Flax's
  u = (np.asarray(x, np.float64) @ w).mean(axis=(1, 2))
  u = (u - mu) / np.sqrt(var + 1e-5)  # init: scale 1, bias 0
  for agent in (plain, moments):
    out, upd = agent.apply(
      v, x, "threshold", True, jnp.asarray(rows)[:, None, None, None], mutable=["batch_stats"]
    )
    np.testing.assert_allclose(upd["batch_stats"]["bn"]["mean"], 0.1 * mu, atol=1e-6)
    np.testing.assert_allclose(upd["batch_stats"]["bn"]["var"], 0.9 + 0.1 * var, rtol=1e-5)
    # attention = u * sigmoid(MLP(u)): recompute from NumPy's u and the MLP's weights.
    p = {k: {n: np.asarray(a, np.float64) for n, a in d.items()} for k, d in v["params"].items()}
    s = np.maximum(u @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0) @ p["fc2"]["kernel"]
    attention = u / (1 + np.exp(-(s + p["fc2"]["bias"])))
    np.testing.assert_allclose(out["attention"], attention, rtol=1e-4, atol=1e-5)


# Slow tier; the fast tier compares each agent: test_agent_from_moments_equals_plain_layers.
@pytest.mark.slow
def test_quickstart_dynamos_loss_equal_with_moments():
  """The quick-start model's whole Dynamos loss (current + replay passes) both ways."""
  config = sibling_config(QUICKSTART, "quickstart.py").get_config()
  data = sources.load_dataset("mnist", "bundled")
  bench = types.SimpleNamespace(num_classes=10, num_tasks=5)
  pair = []
  for flag in (False, True):
    config.model.agent_moments = flag
    pair.append(methods.get_method(config, bench))
  assert pair[1].model.agent_moments and not pair[0].model.agent_moments
  b = config.batch_size
  images = jnp.asarray(data.train_images[::199][: 2 * b])
  labels = jnp.asarray(data.train_labels[::199][: 2 * b])
  batch = Batch(images[:b], labels[:b], jnp.ones(b, bool).at[-1].set(False))
  rng = np.random.default_rng(0)
  replay = Replay(
    images[b:],
    labels[b:],
    jnp.asarray(rng.normal(size=(b, 10)), jnp.float32),
    jnp.asarray(rng.normal(size=(b, pair[0].model.attention_dim)), jnp.float32),
  )
  replays = ((replay, jnp.ones(b, bool).at[:2].set(False)),)
  states = [m.init(jax.random.key(0), batch, bench) for m in pair]
  for a, c in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(a, c)
  # Away from the init (running statistics 0 / 1), as late in a task.
  state = states[0]
  outs = []
  for m in pair:
    loss_fn = lambda p, m=m: m.loss(p, state.batch_stats, batch, replays, jax.random.key(9))
    outs.append(jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.params))
  ((l_p, o_p), g_p), ((l_m, o_m), g_m) = outs
  np.testing.assert_allclose(l_p, l_m, rtol=1e-4)
  _close(o_p.batch_stats, o_m.batch_stats, rtol=1e-5)
  _close(o_p.logits, o_m.logits)
  _close(o_p.attention, o_m.attention)
  for k in o_p.metrics:
    np.testing.assert_allclose(o_p.metrics[k], o_m.metrics[k], rtol=1e-4, atol=1e-6, err_msg=k)
  _close(g_p, g_m, rtol=1e-3)
  agent_grads = g_m["layer2_0"]["agent_a"]["pointwise"]["kernel"]
  assert np.abs(np.asarray(agent_grads)).max() > 0
  # Eval mode (thresholded agents, running statistics) of the updated statistics.
  evals = [m.predict(state.replace(batch_stats=o_p.batch_stats), images, 0, "main") for m in pair]
  _close(evals[0], evals[1])
