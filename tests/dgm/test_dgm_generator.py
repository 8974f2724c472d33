"""DGM's generator (methods/dgm/generator_dcgan.py): shapes and counts
(docs/dgm.md#parameter-counts), growth, sub-networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import hat


def _numpy_conv_transpose(x, w, stride, pad):
  """PyTorch's ConvTranspose2d by its definition: each input pixel scatters w into the output."""
  n, h, wd, _ = x.shape
  _, c_out, k, _ = w.shape
  full = np.zeros((n, (h - 1) * stride + k, (wd - 1) * stride + k, c_out))
  for i in range(h):
    for j in range(wd):
      # [n, c_in] x [c_in, c_out, k, k] -> [n, k, k, c_out]
      full[:, i * stride : i * stride + k, j * stride : j * stride + k] += np.einsum(
        "nc,cokl->nklo", x[:, i, j], w
      )
  return full[:, pad : full.shape[1] - pad, pad : full.shape[2] - pad]


@pytest.mark.parametrize("stride, pad, size", [(1, 0, 1), (2, 1, 4), (2, 1, 3)])
def test_conv_transpose_is_pytorchs(stride, pad, size):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
  w = rng.normal(size=(3, 5, 4, 4)).astype(np.float32)
  got = gen.conv_transpose(jnp.asarray(x), jnp.asarray(w), stride, pad)
  np.testing.assert_allclose(got, _numpy_conv_transpose(x, w, stride, pad), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  "variant, ngf, channels, masked, head, bn",
  [
    ("w", 6, 1, 54912, 96, 84),
    ("a", 20, 1, 227840, 320, 280),
    ("w", 6, 3, 54912, 288, 84),
    ("a", 20, 3, 227840, 960, 280),
  ],
)
def test_counts_at_the_start_are_the_reference_counts(variant, ngf, channels, masked, head, bn):
  spec = gen.GeneratorSpec(variant, ngf, 128, channels, num_tasks=10)
  params, stats, counts = gen.init(jax.random.key(0), spec)
  assert gen.masked_count(spec, counts) == masked
  assert gen.private_count(spec, counts) == (head, bn)
  # The existence masks cover exactly those entries of the padded arrays.
  exist = gen.weight_exist(counts, [w.shape for w in params["w"]])
  assert sum(int(jnp.sum(x)) * 16 for x in exist) == masked
  # Padding is zero; the active block is drawn as docs/dgm.md#initialisation says.
  for w, x in zip(params["w"], exist):
    assert float(jnp.max(jnp.abs(w * (1 - x)))) == 0.0
  w1 = np.asarray(params["w"][0])[:, : counts[0]]
  if variant == "w":  # Xavier-uniform, gain sqrt 2: bound sqrt(2) sqrt(6 / (C_out 16 + C_in 16))
    bound = np.sqrt(2) * np.sqrt(6 / (16 * (128 + 4 * ngf)))
    assert np.abs(w1).max() <= bound and np.abs(w1).max() > 0.95 * bound
  else:
    assert abs(w1.std() - 0.02) < 0.002
  scale = np.asarray(params["scale"][0][0, : counts[0]])
  assert abs(scale.mean() - 1.0) < 0.02 and 0 < scale.std() < 0.04
  assert all(
    e.shape == (w.shape if variant == "w" else (w.shape[1],))
    for e, w in zip(params["emb"], params["w"])
  )


def _ones_masks(spec, params):
  if spec.variant == "w":
    return tuple(jnp.ones(w.shape) for w in params["w"])
  return tuple(jnp.ones(w.shape[1]) for w in params["w"])


@pytest.mark.parametrize("variant", ["w", "a"])
def test_growth_follows_the_rule_and_keeps_past_subnetworks(variant):
  spec = gen.GeneratorSpec(variant, 6, 128, 1, num_tasks=3)
  params, stats, counts = gen.init(jax.random.key(1), spec)
  params["head"] = (
    params["head"]
    .at[0]
    .set(gen.head_init(jax.random.key(2), spec, counts[2], params["head"].shape[1]))
  )
  z = gen.noise(jax.random.key(3), 4, 128, jnp.zeros(4, jnp.int32), 10)
  masks = _ones_masks(spec, params)
  before, _ = gen.forward(spec, params, stats, z, 0, masks, counts, train=False)
  delta = (1000, 500, 300) if variant == "w" else (5, 0, 3)
  if variant == "w":
    add = hat.growth_w(delta, spec.inputs(counts), counts, gen.KERNEL)
    assert add == (1, 1, 1)  # tests/dgm/test_hat.py's hand example
  else:
    add = hat.growth_a(delta)
  new = tuple(int(c + a) for c, a in zip(counts, add))
  widths = tuple(gen.round_up(c, 8) for c in new)
  grown, grown_stats = gen.grow(jax.random.key(4), spec, params, stats, counts, new, widths)
  expected = {
    "w": 128 * 25 * 16 + 25 * 13 * 16 + 13 * 7 * 16,
    "a": 128 * 29 * 16 + 29 * 12 * 16 + 12 * 9 * 16,
  }[variant]
  assert gen.masked_count(spec, new) == expected
  exist = gen.weight_exist(jnp.asarray(new), [w.shape for w in grown["w"]])
  assert sum(int(jnp.sum(x)) * 16 for x in exist) == expected
  for l, (w_old, w_new, x) in enumerate(zip(params["w"], grown["w"], exist)):
    i, o = (128, 24, 12)[l], counts[l]
    np.testing.assert_array_equal(w_new[:i, :o], w_old[:i, :o])  # the old block kept
    assert float(jnp.max(jnp.abs(w_new * (1 - x)))) == 0.0  # padding still zero
  new_rows = np.asarray(grown["w"][1])[24 : new[0], : new[1]]
  if new_rows.size:
    assert np.all(new_rows != 0)
  # Task 0 still runs on its own sub-network: the new channels do not reach it.
  after, _ = gen.forward(
    spec, grown, grown_stats, z, 0, _ones_masks(spec, grown), counts, train=False
  )
  np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
  # A task at the new counts (its BN and head as wide) uses the new channels.
  wide = dict(
    grown,
    scale=tuple(jnp.ones_like(x) for x in grown["scale"]),
    head=grown["head"].at[1].set(gen.head_init(jax.random.key(5), spec, new[2], widths[2])),
  )
  wider, _ = gen.forward(
    spec, wide, grown_stats, z, 1, _ones_masks(spec, grown), jnp.asarray(new), train=False
  )
  narrow, _ = gen.forward(
    spec, wide, grown_stats, z, 1, _ones_masks(spec, grown), counts, train=False
  )
  assert float(jnp.max(jnp.abs(wider - narrow))) > 1e-4


def test_padding_gets_no_gradient_and_conditioning_zeroes_reserved_weights():
  spec = gen.GeneratorSpec("w", 6, 128, 1, num_tasks=2)
  params, stats, counts = gen.init(jax.random.key(0), spec)
  params["head"] = (
    params["head"]
    .at[0]
    .set(gen.head_init(jax.random.key(2), spec, counts[2], params["head"].shape[1]))
  )
  z = gen.noise(jax.random.key(3), 6, 128, jnp.zeros(6, jnp.int32), 10)
  exist = gen.weight_exist(counts, [w.shape for w in params["w"]])

  def loss(p):
    masks = tuple(hat.mask(e, 3.0, x) for e, x in zip(p["emb"], exist))
    out, _ = gen.forward(spec, p, stats, z, 0, masks, counts, train=True)
    return jnp.sum(out**2)

  grads = jax.grad(loss)(params)
  for g, ge, x in zip(grads["w"], grads["emb"], exist):
    assert float(jnp.max(jnp.abs(g * (1 - x)))) == 0.0
    assert float(jnp.max(jnp.abs(ge * (1 - x)))) == 0.0
    assert float(jnp.max(jnp.abs(g * x))) > 0
  rng = np.random.default_rng(0)
  cum = tuple(
    jnp.asarray(rng.integers(0, 2, w.shape), jnp.float32) * x for w, x in zip(params["w"], exist)
  )
  for g, c, x in zip(grads["w"], cum, exist):
    conditioned = g * hat.weight_conditioner_w(c, x)
    assert np.all(np.asarray(conditioned)[np.asarray(c) == 1] == 0.0)
    np.testing.assert_array_equal(
      np.asarray(conditioned)[np.asarray(c * x) == 0], np.asarray(g * x)[np.asarray(c * x) == 0]
    )


def test_batch_norm_statistics_ignore_padding_and_keep_pytorchs_running_variance():
  spec = gen.GeneratorSpec("a", 2, 16, 1, num_tasks=2)
  params, stats, counts = gen.init(jax.random.key(0), spec)
  params["head"] = (
    params["head"]
    .at[0]
    .set(gen.head_init(jax.random.key(2), spec, counts[2], params["head"].shape[1]))
  )
  z = gen.noise(jax.random.key(1), 5, 16, jnp.zeros(5, jnp.int32), 0)
  masks = _ones_masks(spec, params)
  valid = jnp.array([True, True, True, False, False])
  out, new = gen.forward(spec, params, stats, z, 0, masks, counts, train=True, sample_mask=valid)
  # Only task 0's row moved; padding rows do not change the valid rows' output.
  np.testing.assert_array_equal(new["mean"][0][1], stats["mean"][0][1])
  np.testing.assert_array_equal(new["var"][1][1], stats["var"][1][1])
  z2 = z.at[3:].set(100.0)
  out2, _ = gen.forward(spec, params, stats, z2, 0, masks, counts, train=True, sample_mask=valid)
  assert float(jnp.max(jnp.abs(out[:3]))) > 0
  np.testing.assert_allclose(out2[:3], out[:3], rtol=1e-5, atol=1e-6)
  # conv1 on 1x1 noise: its output per sample is z @ w1 at each of the 4x4 pixels.
  y = np.einsum("nc,cokl->nklo", np.asarray(z[:3]), np.asarray(params["w"][0]))
  mu, var = y.mean((0, 1, 2)), y.var((0, 1, 2), ddof=1)
  np.testing.assert_allclose(new["mean"][0][0], 0.1 * mu, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(new["var"][0][0], 0.9 + 0.1 * var, rtol=1e-4)
