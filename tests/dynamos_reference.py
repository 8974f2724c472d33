"""An independent re-computation of Dynamos' loss terms, for the tests.

Written from docs/dynamos.md#loss-terms, not from ``dynamos_jax.methods.dynamos.loss_terms``: the
tests compare the library's step against these. Every function takes the array module ``xp``
(``numpy`` in float64 for values, ``jax.numpy`` where a test differentiates) and only the model's
raw outputs: logits, the sampled actions and the attention vectors V. Quantities with no gradient
(rewards, which samples are correct) are computed on the host with NumPy and passed in as constants.
"""

import numpy as np

# PyTorch's Bernoulli clips probabilities to [eps, 1 - eps], eps = 2^-23.
EPS = 2.0**-23


def log_softmax(xp, logits):
  z = logits - xp.max(logits, axis=-1, keepdims=True)
  return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def cross_entropy(xp, logits, labels):
  """Mean over the batch of -log softmax(logits)[label]. logits [B, K], labels [B]."""
  picked = xp.take_along_axis(log_softmax(xp, logits), xp.asarray(labels)[:, None], axis=-1)
  return -xp.mean(picked)


def log_prob(xp, attention, actions, tau, num_agents):
  """[B, L]: each agent's log pi of its actions, p = sigmoid(V / tau) clipped to [eps, 1-eps]."""
  p = xp.clip(1.0 / (1.0 + xp.exp(-attention / tau)), EPS, 1.0 - EPS)
  per_channel = actions * xp.log(p) + (1.0 - actions) * xp.log(1.0 - p)
  return xp.sum(per_channel.reshape(per_channel.shape[0], num_agents, -1), axis=-1)


def correct(logits, labels):
  """[B] bool: argmax of the logits equals the label (host NumPy)."""
  return np.argmax(np.asarray(logits), -1) == np.asarray(labels)


def rewards(logits, actions, labels, kr, lam, num_agents):
  """[B, L] host constants: -(kr - keep fraction of agent l)^2, times lam if misclassified."""
  actions = np.asarray(actions, np.float64)
  keep = actions.reshape(actions.shape[0], num_agents, -1).mean(-1)
  scale = np.where(correct(logits, labels), 1.0, lam)[:, None]
  return -scale * (kr - keep) ** 2


def reinforce(xp, log_probs, reward):
  """Mean over samples and agents of -R log pi."""
  return xp.mean(-reward * log_probs)


def prototype(xp, attention, labels, is_correct):
  """(1 + N) / (1 + M) over unordered pairs i < j of correct samples (0 if < 3 correct).

  N (M): sum over same-label (different-label) pairs of mean((V_i - V_j)^2).
  """
  rows = np.flatnonzero(is_correct)
  if len(rows) < 3:
    return 0.0
  labels = np.asarray(labels)
  within, between = 0.0, 0.0
  for a in range(len(rows)):
    for b in range(a + 1, len(rows)):
      i, j = rows[a], rows[b]
      d = xp.mean((attention[i] - attention[j]) ** 2)
      if labels[i] == labels[j]:
        within = within + d
      else:
        between = between + d
  return (1.0 + within) / (1.0 + between)


def mse(xp, new, old):
  """Element-wise mean of (new - old)^2."""
  return xp.mean((new - old) ** 2)
