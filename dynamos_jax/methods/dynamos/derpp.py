"""DER++ (Buzzega et al., NeurIPS 2020).

L = CE(Z_B) + alpha * mean((f(x_M1) - Z_M1)^2) + beta * CE(f(x_M2), y_M2)

with two independent replay minibatches M1, M2 (three train-mode forwards,
each updating the BN statistics, in that order) and a plain reservoir that
stores images, labels and the pre-update logits of every sample.
"""

import dataclasses

import ml_collections

from dynamos_jax import losses
from dynamos_jax.errors import ConfigError
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
class DERpp(LossMethod):
  """The ``derpp.*`` weights (defaults: ``defaults``)."""

  alpha: float
  beta: float

  name = "derpp"
  namespace = "derpp"
  buffer = "reservoir"
  replay_draws = 2

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    # Mammoth's best arguments for Seq-MNIST, buffer 500 (the paper gives none
    # for its baselines).
    return ml_collections.ConfigDict(
      {
        "alpha": 1.0,  # logit MSE on the first replay draw
        "beta": 0.5,  # cross-entropy on the second replay draw
      }
    )

  @classmethod
  def validate(cls, config) -> None:
    super().validate(config)
    for name in ("alpha", "beta"):
      if config.derpp[name] < 0:
        raise ConfigError(f"derpp.{name} must be >= 0 (got {config.derpp[name]})")

  @classmethod
  def from_config(cls, config, benchmark) -> "DERpp":
    return cls(**cls.shared(config, benchmark), alpha=config.derpp.alpha, beta=config.derpp.beta)

  def loss(self, params, batch_stats, batch, replays, key):
    del key  # No gates.
    (logit_replay, logit_mask), (label_replay, label_mask) = replays
    logits, _, stats = forward(self.model, params, batch_stats, batch.images, batch.mask)
    ce = losses.cross_entropy(logits, batch.labels, batch.mask)
    z, _, stats = forward(self.model, params, stats, logit_replay.images, logit_mask)
    mse_logits = loss_terms.consistency_loss(z, logit_replay.logits, logit_mask)
    z, _, stats = forward(self.model, params, stats, label_replay.images, label_mask)
    r_ce = losses.cross_entropy(z, label_replay.labels, label_mask)
    total = ce + self.alpha * mse_logits + self.beta * r_ce
    metrics = {
      "loss": total,
      "ce": ce,
      "mse_logits": mse_logits,
      "replay_ce": r_ce,
      "train_accuracy": accuracy(logits, batch.labels, batch.mask),
    }
    return total, StepOutput(stats, metrics, logits, no_attention(batch))
