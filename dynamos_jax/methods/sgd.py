"""SGD: the agent-free backbone trained with cross-entropy only, no buffer."""

from dynamos_jax.methods.base import Method, plain_cross_entropy


class SGD(Method):
  gated = False
  uses_buffer = False

  def loss(self, model, params, batch_stats, batch, replay, replay_mask, key):
    del replay, replay_mask, key  # No buffer, no gates.
    return plain_cross_entropy(model, params, batch_stats, batch)
