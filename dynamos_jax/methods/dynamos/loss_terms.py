"""The loss terms of Dynamos, one pure function per paper equation.

Every function takes a ``mask`` marking the real samples of a padded batch, so
shapes never depend on data: padding, an empty buffer or too few correct
predictions become zero weights instead of boolean indexing.
"""

import jax
import jax.numpy as jnp

from dynamos_jax.losses import masked_mean


def reward(
  logits: jax.Array,
  actions: jax.Array,
  labels: jax.Array,
  *,
  keep_ratio: float,
  penalty: float,
  num_agents: int,
) -> jax.Array:
  """Eq. 3: per-sample, per-agent reward, -(kr - keep fraction)^2, x lambda if wrong.

  Args:
    logits: [B, K] from the same stochastic forward as the actions.
    actions: [B, D] 0/1, agents side by side (D / num_agents channels each).
    labels: [B] int.
    keep_ratio: kr, the target fraction of kept channels.
    penalty: lambda > 0, the multiplier for misclassified samples.
    num_agents: L.

  Returns:
    [B, L] rewards (<= 0), with no gradient.
  """
  keep = jnp.mean(actions.reshape(actions.shape[0], num_agents, -1), axis=-1)
  correct = jnp.argmax(logits, axis=-1) == labels
  scale = jnp.where(correct, 1.0, penalty)[:, None]
  return jax.lax.stop_gradient(-scale * (keep_ratio - keep) ** 2)


def reinforce_loss(log_prob: jax.Array, rewards: jax.Array, mask: jax.Array) -> jax.Array:
  """Eq. 4: mean over real samples and agents of -R * log pi (no baseline).

  Args:
    log_prob: [B, L] log-probability of each agent's sampled actions.
    rewards: [B, L] from ``reward``.
    mask: [B] real samples.
  """
  return masked_mean(-jax.lax.stop_gradient(rewards) * log_prob, mask)


def prototype_loss(attention: jax.Array, labels: jax.Array, correct: jax.Array) -> jax.Array:
  """Eq. 5 as the reference code computes it: (1 + N) / (1 + M).

  N (M) is the sum over unordered pairs i < j of correctly classified samples
  with the same (a different) label of the mean squared difference of their
  attention vectors. Zero when fewer than 3 samples are correct.

  Args:
    attention: [B, D] attention vectors V.
    labels: [B] int.
    correct: [B] bool, real samples the network classified correctly.
  """
  dim = attention.shape[-1]
  sq_norm = jnp.sum(attention**2, axis=-1)
  # The reference expands ||Vi - Vj||^2; the result can be slightly negative.
  dist = sq_norm[:, None] + sq_norm[None, :] - 2.0 * attention @ attention.T
  batch = labels.shape[0]
  pairs = jnp.triu(jnp.ones((batch, batch), bool), k=1) & correct[:, None] & correct[None, :]
  same = labels[:, None] == labels[None, :]
  within = jnp.sum(jnp.where(pairs & same, dist, 0.0)) / dim
  between = jnp.sum(jnp.where(pairs & ~same, dist, 0.0)) / dim
  return jnp.where(jnp.sum(correct) >= 3, (1.0 + within) / (1.0 + between), 0.0)


def consistency_loss(new: jax.Array, old: jax.Array, mask: jax.Array) -> jax.Array:
  """Eq. 6 with the reference's element-wise mean: mean of (new - old)^2 over real rows.

  Args:
    new: [B, F] fresh logits or attention vectors of replayed samples.
    old: [B, F] the values stored with them.
    mask: [B] real rows.
  """
  return masked_mean((new - jax.lax.stop_gradient(old)) ** 2, mask)
