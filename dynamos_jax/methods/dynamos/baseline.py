"""The paper's rehearsal baseline, Eq. 8 (the reference ``multi_scale`` method).

L = CE(Z_B) + alpha * mean((Z'_M - Z_M)^2) + beta * CE(Z'_M)

on the agent-free backbone, with Dynamos' add-if-correct reservoir (stores
images, labels and the pre-update logits of correctly classified samples) and
no warm-up. Eq. 8 is Eq. 7 with the agent terms removed and the paper gives
no separate values, so the weights are Eq. 7's: ``dynamos.alpha`` and
``dynamos.beta``. Two train-mode forwards (current batch, then replay batch),
each updating the BN statistics, as for Dynamos.
"""

import dataclasses

from dynamos_jax import losses
from dynamos_jax.methods.base import register
from dynamos_jax.methods.dynamos import loss_terms
from dynamos_jax.methods.dynamos.loss_method import (
  LossMethod,
  StepOutput,
  accuracy,
  forward,
  no_attention,
)


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Baseline(LossMethod):
  """Eq. 8's weights, Dynamos' ``dynamos.alpha`` and ``dynamos.beta`` (defaults there)."""

  alpha: float
  beta: float

  name = "baseline"
  buffer = "add_if_correct"

  @classmethod
  def from_config(cls, config, benchmark) -> "Baseline":
    return cls(
      **cls.shared(config, benchmark), alpha=config.dynamos.alpha, beta=config.dynamos.beta
    )

  def loss(self, params, batch_stats, batch, replays, key):
    del key  # No gates.
    ((replay, replay_mask),) = replays
    logits, _, stats = forward(self.model, params, batch_stats, batch.images, batch.mask)
    ce = losses.cross_entropy(logits, batch.labels, batch.mask)
    r_logits, _, stats = forward(self.model, params, stats, replay.images, replay_mask)
    mse_logits = loss_terms.consistency_loss(r_logits, replay.logits, replay_mask)
    r_ce = losses.cross_entropy(r_logits, replay.labels, replay_mask)
    total = ce + self.alpha * mse_logits + self.beta * r_ce
    metrics = {
      "loss": total,
      "ce": ce,
      "mse_logits": mse_logits,
      "replay_ce": r_ce,
      "train_accuracy": accuracy(logits, batch.labels, batch.mask),
    }
    return total, StepOutput(stats, metrics, logits, no_attention(batch))
