"""The paper's rehearsal baseline, Eq. 8 (the reference ``multi_scale`` method).

L = CE(Z_B) + alpha * mean((Z'_M - Z_M)^2) + beta * CE(Z'_M)

on the agent-free backbone, with Dynamos' add-if-correct reservoir (stores
images, labels and the pre-update logits of correctly classified samples) and
no warm-up. The weights are the config's ``alpha`` and ``beta``: Eq. 8 is
Eq. 7 with the agent terms removed, and the paper gives no separate values.
Two train-mode forwards (current batch, then replay batch), each updating the
BN statistics, as for Dynamos.
"""

import dataclasses

from dynamos_jax import losses
from dynamos_jax.methods.base import Method, StepOutput, accuracy, forward, no_attention


@dataclasses.dataclass(frozen=True)
class Baseline(Method):
  alpha: float = 0.2
  beta: float = 2.0

  uses_buffer = True
  insert_if_correct = True

  @classmethod
  def from_config(cls, config) -> "Baseline":
    return cls(alpha=config.alpha, beta=config.beta)

  def loss(self, model, params, batch_stats, batch, replays, key):
    del key  # No gates.
    (replay, replay_mask), = replays
    logits, _, stats = forward(model, params, batch_stats, batch.images, batch.mask)
    ce = losses.cross_entropy(logits, batch.labels, batch.mask)
    r_logits, _, stats = forward(model, params, stats, replay.images, replay_mask)
    mse_logits = losses.consistency_loss(r_logits, replay.logits, replay_mask)
    r_ce = losses.cross_entropy(r_logits, replay.labels, replay_mask)
    total = ce + self.alpha * mse_logits + self.beta * r_ce
    metrics = {"loss": total, "ce": ce, "mse_logits": mse_logits, "replay_ce": r_ce,
               "train_accuracy": accuracy(logits, batch.labels, batch.mask)}
    return total, StepOutput(stats, metrics, logits, no_attention(batch))
