"""SGD: the agent-free backbone trained with cross-entropy only, no buffer.

The paper's "neither" row (no agents, no buffer): the lower bound that
forgets everything but the last task in class-IL.
"""

from dynamos_jax.methods.base import register
from dynamos_jax.methods.dynamos.loss_method import LossMethod, plain_cross_entropy


@register
class SGD(LossMethod):
  name = "sgd"

  def loss(self, params, batch_stats, batch, replays, key):
    del replays, key  # No buffer, no gates.
    return plain_cross_entropy(self.model, params, batch_stats, batch)
