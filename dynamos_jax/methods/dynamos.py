"""Dynamos: agents trained by REINFORCE, prototype loss, consistency replay (Eq. 7).

L = CE(Z_B) + gamma L_R(B) + w_p L_P(B)
  + alpha L_C^Z + alpha_p L_C^V + beta [CE(Z'_M) + gamma L_R(M)] + w_p L_P(M)

with two separate train-mode forwards (current batch, replay batch), each
updating the BN running statistics, as in the reference code (spec 6.1).
"""

import dataclasses

import jax
import jax.numpy as jnp

from dynamos_jax import losses
from dynamos_jax.methods.base import Batch, Method, StepOutput, forward

NUM_AGENTS = 4


@dataclasses.dataclass(frozen=True)
class Dynamos(Method):
  """Loss weights under their paper names (see dynamos_jax.config)."""

  alpha: float = 0.2
  beta: float = 2.0
  alpha_p: float = 0.2
  gamma: float = 0.5
  w_p: float = 0.3
  lam: float = 500.0
  kr: float = 0.7
  uses_buffer: bool = True

  gated = True

  @classmethod
  def from_config(cls, config) -> "Dynamos":
    return cls(alpha=config.alpha, beta=config.beta, alpha_p=config.alpha_p,
               gamma=config.gamma, w_p=config.w_p, lam=config.lam, kr=config.kr,
               uses_buffer=config.buffer_size > 0)

  def _gated_terms(self, logits, aux, labels, mask):
    """CE, REINFORCE and prototype losses of one gated forward; the correct mask."""
    correct = (jnp.argmax(logits, -1) == labels) & mask
    rewards = losses.reward(logits, aux["actions"], labels, keep_ratio=self.kr,
                            penalty=self.lam, num_agents=NUM_AGENTS)
    ce = losses.cross_entropy(logits, labels, mask)
    rl = losses.reinforce_loss(aux["log_prob"], rewards, mask)
    proto = losses.prototype_loss(aux["attention"], labels, correct)
    return ce, rl, proto, correct

  def loss(self, model, params, batch_stats, batch: Batch, replays, key):
    key_current, key_replay = jax.random.split(key)
    logits, aux, stats = forward(model, params, batch_stats, batch.images, batch.mask, "sample",
                                 key_current)
    ce, rl, proto, correct = self._gated_terms(logits, aux, batch.labels, batch.mask)
    total = ce + self.gamma * rl + self.w_p * proto
    metrics = {"ce": ce, "reinforce": rl, "prototype": proto,
               "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1)}
    # Fraction of channels each agent keeps on this batch: [B, L] -> per agent.
    keep = aux["actions"].reshape(logits.shape[0], NUM_AGENTS, -1).mean(-1)
    metrics.update({f"keep_ratio_{l + 1}": losses.masked_mean(keep[:, l], batch.mask)
                    for l in range(NUM_AGENTS)})

    if self.uses_buffer:
      (replay, replay_mask), = replays
      # A second forward, after the first one's BN update (spec 14.7).
      r_logits, r_aux, stats = forward(model, params, stats, replay.images, replay_mask,
                                       "sample", key_replay)
      r_ce, r_rl, r_proto, _ = self._gated_terms(r_logits, r_aux, replay.labels, replay_mask)
      mse_logits = losses.consistency_loss(r_logits, replay.logits, replay_mask)
      mse_attention = losses.consistency_loss(r_aux["attention"], replay.attention, replay_mask)
      total += (self.alpha * mse_logits + self.alpha_p * mse_attention
                + self.beta * (r_ce + self.gamma * r_rl) + self.w_p * r_proto)
      metrics.update({"replay_ce": r_ce, "replay_reinforce": r_rl, "replay_prototype": r_proto,
                      "mse_logits": mse_logits, "mse_attention": mse_attention})
    metrics["loss"] = total
    return total, StepOutput(stats, metrics, jax.lax.stop_gradient(logits),
                             jax.lax.stop_gradient(aux["attention"]))


class DynamosNoBuffer(Dynamos):
  """Agents, reward and prototype loss on the current batch only (reference dynamos_sgd)."""

  @classmethod
  def from_config(cls, config) -> "DynamosNoBuffer":
    return dataclasses.replace(super().from_config(config), uses_buffer=False)
