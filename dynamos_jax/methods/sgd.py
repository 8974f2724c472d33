"""SGD: the agent-free backbone trained with cross-entropy only, no buffer.

The paper's "neither" row (no agents, no buffer): the lower bound that
forgets everything but the last task in class-IL.
"""

from dynamos_jax.methods.base import Method, plain_cross_entropy


class SGD(Method):
  gated = False
  uses_buffer = False

  def loss(self, model, params, batch_stats, batch, replays, key):
    del replays, key  # No buffer, no gates.
    return plain_cross_entropy(model, params, batch_stats, batch)
