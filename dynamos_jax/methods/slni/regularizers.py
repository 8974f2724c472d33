"""The representation regularisers of SLNI's family (docs/slni.md#representation-regularisers).

Each takes one layer's post-activation ``h`` [M, N] of a padded minibatch and
``mask`` [M] (its real rows; M in the formulas is their count) and returns a
scalar to add, times lambda_SSL, to the loss:

  SNI    sum_{i != j} |C_ij|                         C = H^T H / M (uncentred)
  SLNI   sum_{i != j} G_ij |C_ij|                    G_ij = exp(-(i - j)^2 / (2 sigma^2))
  SNID   sum_{i != j} D_ij |C_ij|                    D from the neuron importance alpha
  SLNID  sum_{i != j} G_ij D_ij |C_ij|
  L1-Rep sum_i mean_m |h_i^m|
  DeCov  (||C_c||_F^2 - ||diag C_c||^2) / 2          C_c the centred covariance

``D_ij`` is ``exp(-(alpha_i + alpha_j))`` (``product``, the paper's Eq. 6)
or ``exp(-max(alpha_i, alpha_j))`` (``min``, the released code's default).
With alpha = 0 (before the first task ends) D = 1: SLNID is SLNI there.
"""

import jax
import jax.numpy as jnp

DISCOUNTS = ("product", "min")


def _rows(h: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``h`` with padding rows zeroed, and the real row count (at least 1)."""
  m = mask.astype(h.dtype)
  return h * m[:, None], jnp.maximum(jnp.sum(m), 1.0)


def correlation(h: jax.Array, mask: jax.Array) -> jax.Array:
  """C [N, N] = H^T H / M over the real rows (no centring: the papers' zero-mean assumption)."""
  h, count = _rows(h, mask)
  return h.T @ h / count


def locality(n: int, sigma: float | None) -> jax.Array:
  """G [N, N]: the Gaussian weight of unit distance |i - j|, 1 on the diagonal; all
  ones without locality (``sigma`` None or 0: SNI, SNID)."""
  if not sigma:
    return jnp.ones((n, n))
  d = jnp.arange(n, dtype=jnp.float32)
  return jnp.exp(-((d[:, None] - d[None, :]) ** 2) / (2.0 * sigma**2))


def discount(alpha: jax.Array, mode: str) -> jax.Array:
  """D [N, N] from the neuron importance alpha [N] (constant in the step: no gradient)."""
  alpha = jax.lax.stop_gradient(alpha)
  if mode == "product":
    return jnp.exp(-(alpha[:, None] + alpha[None, :]))
  if mode == "min":
    return jnp.exp(-jnp.maximum(alpha[:, None], alpha[None, :]))
  raise ValueError(f"unknown discount {mode!r}; expected one of {DISCOUNTS}")


def decorrelation(h: jax.Array, mask: jax.Array, weights: jax.Array) -> jax.Array:
  """sum over ordered pairs i != j of ``weights`` [N, N] * |C_ij| (SNI, SLNI, SNID, SLNID)."""
  c = correlation(h, mask)
  off_diagonal = 1.0 - jnp.eye(c.shape[0], dtype=c.dtype)
  return jnp.sum(weights * off_diagonal * jnp.abs(c))


def l1_rep(h: jax.Array, mask: jax.Array) -> jax.Array:
  """sum_i mean over real rows of |h_i|."""
  h, count = _rows(h, mask)
  return jnp.sum(jnp.abs(h)) / count


def decov(h: jax.Array, mask: jax.Array) -> jax.Array:
  """Cogswell et al.: half the squared off-diagonal Frobenius norm of the centred covariance."""
  h, count = _rows(h, mask)
  centred = (h - jnp.sum(h, 0) / count) * mask.astype(h.dtype)[:, None]
  c = centred.T @ centred / count
  return 0.5 * (jnp.sum(c**2) - jnp.sum(jnp.diag(c) ** 2))
