"""Loss helpers every learner family uses, masked for padded batches: a ``mask``
marks the real samples, so shapes never depend on data.
"""

import jax
import jax.numpy as jnp
import optax


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``values`` [B, ...] over the rows where ``mask`` [B] is True (0 if none)."""
  mask = mask.reshape(mask.shape + (1,) * (values.ndim - 1)).astype(values.dtype)
  count = jnp.sum(jnp.broadcast_to(mask, values.shape))
  return jnp.sum(values * mask) / jnp.maximum(count, 1.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over real samples. logits [B, K], labels [B] int."""
  return masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), mask)
