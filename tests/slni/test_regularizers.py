"""SLNI's representation regularisers: the hand-worked values of docs/slni.md#worked-example,
independent NumPy re-computations, padding, and the gradient of the ordered-pair sum."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.slni import regularizers as reg

H = jnp.array([[1.0, 2.0], [3.0, 0.0]])
ALL = jnp.ones(2, bool)


def test_hand_worked_values():
  np.testing.assert_allclose(reg.correlation(H, ALL), [[5.0, 1.0], [1.0, 2.0]])
  assert float(reg.decorrelation(H, ALL, reg.locality(2, None))) == pytest.approx(2.0)  # SNI
  # SLNI with sigma = N / 6 = 1/3: G_01 = exp(-4.5).
  slni = reg.decorrelation(H, ALL, reg.locality(2, 2 / 6))
  assert float(slni) == pytest.approx(2 * np.exp(-4.5), rel=1e-5)
  assert float(slni) == pytest.approx(0.022218, abs=1e-6)
  assert float(reg.decov(H, ALL)) == pytest.approx(1.0)
  assert float(reg.l1_rep(H, ALL)) == pytest.approx(3.0)


def test_discounts():
  alpha = jnp.array([0.5, 2.0])
  np.testing.assert_allclose(reg.discount(alpha, "product")[0, 1], np.exp(-2.5), rtol=1e-6)
  np.testing.assert_allclose(reg.discount(alpha, "min")[0, 1], np.exp(-2.0), rtol=1e-6)
  # alpha = 0 reproduces SLNI under either discount.
  g = reg.locality(2, 1 / 3)
  for mode in reg.DISCOUNTS:
    d = reg.discount(jnp.zeros(2), mode)
    assert float(reg.decorrelation(H, ALL, g * d)) == float(reg.decorrelation(H, ALL, g))
  with pytest.raises(ValueError, match="unknown discount"):
    reg.discount(alpha, "max")


def _numpy_reference(h, alpha, sigma, mode):
  """The definitions, written out with loops over units."""
  m, n = h.shape
  c = h.T @ h / m
  out = {"sni": 0.0, "slnid": 0.0}
  for i, j in itertools.product(range(n), range(n)):
    if i == j:
      continue
    g = np.exp(-((i - j) ** 2) / (2 * sigma**2))
    d = np.exp(-(alpha[i] + alpha[j])) if mode == "product" else np.exp(-max(alpha[i], alpha[j]))
    out["sni"] += abs(c[i, j])
    out["slnid"] += g * d * abs(c[i, j])
  mu = h.mean(0)
  cc = (h - mu).T @ (h - mu) / m
  out["decov"] = 0.5 * ((cc**2).sum() - (np.diag(cc) ** 2).sum())
  out["l1"] = np.abs(h).sum() / m
  return out


@pytest.mark.parametrize("mode", reg.DISCOUNTS)
def test_against_numpy_with_padding_rows_ignored(mode):
  rng = np.random.default_rng(0)
  h = np.maximum(rng.normal(size=(7, 12)), 0.0)
  alpha = rng.uniform(0, 1.5, 12)
  want = _numpy_reference(h, alpha, sigma=12 / 6, mode=mode)
  # Three padding rows of garbage: they must not count.
  padded = jnp.asarray(np.concatenate([h, rng.normal(size=(3, 12)) * 50]), jnp.float32)
  mask = jnp.arange(10) < 7
  weights = reg.locality(12, 12 / 6) * reg.discount(jnp.asarray(alpha, jnp.float32), mode)
  got = {
    "sni": reg.decorrelation(padded, mask, reg.locality(12, None)),
    "slnid": reg.decorrelation(padded, mask, weights),
    "decov": reg.decov(padded, mask),
    "l1": reg.l1_rep(padded, mask),
  }
  for name in want:
    np.testing.assert_allclose(float(got[name]), want[name], rtol=2e-5)


def test_gradient_is_the_ordered_pair_sum():
  """dR/dh_i^m = (2/M) sum_{j != i} W_ij h_j^m for H >= 0 (autograd's factor 2,
  docs/slni.md#representation-regularisers)."""
  rng = np.random.default_rng(1)
  h = jnp.asarray(np.maximum(rng.normal(size=(5, 6)), 0.0) + 0.1, jnp.float32)
  w = reg.locality(6, 1.0) * reg.discount(jnp.asarray(rng.uniform(0, 1, 6), jnp.float32), "min")
  grad = jax.grad(lambda x: reg.decorrelation(x, jnp.ones(5, bool), w))(h)
  off = np.asarray(w) * (1 - np.eye(6))
  np.testing.assert_allclose(grad, 2 / 5 * np.asarray(h) @ off.T, rtol=1e-5)
