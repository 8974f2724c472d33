"""Experience replay (ER; Chaudhry et al. 2019, as in Mammoth).

One forward over the current batch concatenated with a replay minibatch,
cross-entropy averaged over all their real rows. The buffer is a plain
reservoir: every sample of the stream is a candidate, correct or not.
"""

import jax.numpy as jnp

from dynamos_jax import losses
from dynamos_jax.methods.base import register
from dynamos_jax.methods.dynamos.loss_method import (
  LossMethod,
  StepOutput,
  accuracy,
  forward,
  no_attention,
)


@register
class ER(LossMethod):
  name = "er"
  buffer = "reservoir"

  def loss(self, params, batch_stats, batch, replays, key):
    del key  # No gates.
    ((replay, replay_mask),) = replays
    b = batch.labels.shape[0]
    images = jnp.concatenate([batch.images, replay.images])
    labels = jnp.concatenate([batch.labels, replay.labels])
    mask = jnp.concatenate([batch.mask, replay_mask])
    logits, _, stats = forward(self.model, params, batch_stats, images, mask)
    ce = losses.cross_entropy(logits, labels, mask)
    metrics = {
      "loss": ce,
      "ce": ce,
      "train_accuracy": accuracy(logits[:b], batch.labels, batch.mask),
    }
    return ce, StepOutput(stats, metrics, logits[:b], no_attention(batch))
