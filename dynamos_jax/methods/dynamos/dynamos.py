"""Dynamos: agents trained by REINFORCE, prototype loss, consistency replay (Eq. 7).

L = CE(Z_B) + gamma L_R(B) + w_p L_P(B)
  + alpha L_C^Z + alpha_p L_C^V + beta [CE(Z'_M) + gamma L_R(M)] + w_p L_P(M)

with two separate train-mode forwards (current batch, replay batch), each
updating the BN running statistics, as in the reference code
(docs/dynamos.md#two-forwards-and-batchnorm-statistics).
Task 1 starts with a warm-up phase (docs/dynamos.md#warmup): agent-free cross-entropy only.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from dynamos_jax import benchmarks, losses
from dynamos_jax.errors import ConfigError, require
from dynamos_jax.methods.base import register
from dynamos_jax.methods.dynamos import loss_terms, two_pass
from dynamos_jax.methods.dynamos.loss_method import LossMethod, StepOutput, forward


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Dynamos(LossMethod):
  """Loss weights under their paper names (their defaults and meaning: ``defaults``)."""

  alpha: float
  beta: float
  alpha_p: float
  gamma: float
  w_p: float
  lam: float
  kr: float
  warmup_iterations: int
  warmup_epochs: int

  name = "dynamos"
  namespace = "dynamos"
  gated = True
  buffer = "add_if_correct"
  buffer_optional = True  # buffer_size=0: agents without replay (as dynamos_nobuffer)

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    """Eq. 7's weights under the paper's names, the reference's defaults."""
    c = ml_collections.ConfigDict()
    c.alpha = 0.2  # logit consistency on replayed samples
    c.beta = 2.0  # replay cross-entropy and replay REINFORCE
    c.alpha_p = 0.2  # attention-vector consistency on replayed samples
    c.gamma = 0.5  # REINFORCE weight
    c.w_p = 0.3  # prototype loss weight
    c.lam = 500.0  # penalty on the reward of misclassified samples (code: -policy_penalty)
    c.kr = 0.7  # target keep ratio per agent
    c.tau = 0.15  # temperature of the agents' probability layer
    # Warm-up: agent-free CE-only training at the very start of task 1.
    # Exactly one of the two is > 0 (or both 0: no warm-up).
    c.warmup = ml_collections.ConfigDict({"iterations": 10, "epochs": 0})
    return c

  @classmethod
  def validate(cls, config) -> None:
    super().validate(config)
    d = config.dynamos

    require(0.0 < d.kr <= 1.0, f"keep ratio dynamos.kr must be in (0, 1] (got {d.kr})")
    require(d.tau > 0.0, f"temperature dynamos.tau must be > 0 (got {d.tau})")
    require(
      d.lam >= 0.0,
      f"dynamos.lam (the penalty lambda, positive in the paper's convention) "
      f"must be >= 0 (got {d.lam}); the reference code's --policy-penalty=-500 is lam=500",
    )
    for name in ("alpha", "beta", "alpha_p", "gamma", "w_p"):
      require(d[name] >= 0.0, f"dynamos.{name} must be >= 0 (got {d[name]})")
    w = d.warmup
    require(
      w.iterations >= 0 and w.epochs >= 0,
      "dynamos.warmup.iterations and dynamos.warmup.epochs must be >= 0",
    )
    require(
      not (w.iterations and w.epochs),
      "set only one of dynamos.warmup.iterations and dynamos.warmup.epochs (the other to 0)",
    )
    require(
      w.epochs <= config.epochs,
      f"dynamos.warmup.epochs ({w.epochs}) exceeds epochs per task ({config.epochs})",
    )
    benchmark = benchmarks.REGISTRY.get(config.dataset)
    require(
      not (benchmark and benchmark.single_pass and w.epochs),
      f"{config.dataset} is a single pass over its stream: count the warm-up in iterations "
      "(--config.dynamos.warmup.epochs=0 --config.dynamos.warmup.iterations=10)",
    )

  @classmethod
  def from_config(cls, config, benchmark) -> "Dynamos":
    d = config.dynamos
    return cls(
      **cls.shared(config, benchmark, temperature=d.tau),
      alpha=d.alpha,
      beta=d.beta,
      alpha_p=d.alpha_p,
      gamma=d.gamma,
      w_p=d.w_p,
      lam=d.lam,
      kr=d.kr,
      warmup_iterations=d.warmup.iterations,
      warmup_epochs=d.warmup.epochs,
    )

  def training_marks(self):
    return {"keep_ratio": self.kr}  # the agents' target, on the keep-ratio curves

  def phases(self, task, batches):
    """The warm-up opens task 1: iterations, or epochs of task 1's batches.

    See docs/dynamos.md#warmup.
    """
    steps = self.warmup_iterations or self.warmup_epochs * batches
    if task == 0 and steps:
      return (("warmup", steps), ("main", None))
    return (("main", None),)

  def _gated_terms(self, logits, aux, labels, mask):
    """CE, REINFORCE and prototype losses of one gated forward; the correct mask."""
    correct = (jnp.argmax(logits, -1) == labels) & mask
    rewards = loss_terms.reward(
      logits,
      aux["actions"],
      labels,
      keep_ratio=self.kr,
      penalty=self.lam,
      num_agents=self.model.num_agents,
    )
    ce = losses.cross_entropy(logits, labels, mask)
    rl = loss_terms.reinforce_loss(aux["log_prob"], rewards, mask)
    proto = loss_terms.prototype_loss(aux["attention"], labels, correct)
    return ce, rl, proto, correct

  def loss(self, params, batch_stats, batch, replays, key):
    key_current, key_replay = jax.random.split(key)
    logits, aux, stats = forward(
      self.model, params, batch_stats, batch.images, batch.mask, "sample", key_current
    )
    ce, rl, proto, correct = self._gated_terms(logits, aux, batch.labels, batch.mask)
    total = ce + self.gamma * rl + self.w_p * proto
    metrics = {
      "ce": ce,
      "reinforce": rl,
      "prototype": proto,
      "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1),
    }
    # Fraction of channels each agent keeps on this batch: [B, L] -> per agent.
    agents = self.model.num_agents
    keep = aux["actions"].reshape(logits.shape[0], agents, -1).mean(-1)
    metrics.update(
      {f"keep_ratio_{l + 1}": losses.masked_mean(keep[:, l], batch.mask) for l in range(agents)}
    )

    if replays:
      ((replay, replay_mask),) = replays
      # A second forward, after the first one's BN update
      # (docs/dynamos.md#two-forwards-and-batchnorm-statistics).
      r_logits, r_aux, stats = forward(
        self.model, params, stats, replay.images, replay_mask, "sample", key_replay
      )
      r_ce, r_rl, r_proto, _ = self._gated_terms(r_logits, r_aux, replay.labels, replay_mask)
      mse_logits = loss_terms.consistency_loss(r_logits, replay.logits, replay_mask)
      mse_attention = loss_terms.consistency_loss(r_aux["attention"], replay.attention, replay_mask)
      total += (
        self.alpha * mse_logits
        + self.alpha_p * mse_attention
        + self.beta * (r_ce + self.gamma * r_rl)
        + self.w_p * r_proto
      )
      metrics.update(
        {
          "replay_ce": r_ce,
          "replay_reinforce": r_rl,
          "replay_prototype": r_proto,
          "mse_logits": mse_logits,
          "mse_attention": mse_attention,
        }
      )
    metrics["loss"] = total
    return total, StepOutput(
      stats, metrics, jax.lax.stop_gradient(logits), jax.lax.stop_gradient(aux["attention"])
    )

  def _pass_loss(self, params, p):
    """One pass's share of Eq. 7 and its contribution to the step's outputs (two_pass).

    ``p`` holds the pass's BN statistics, images, labels, mask, gates key,
    stored logits and attention (zeros for the current batch), ``weights``
    (alpha, alpha_p, beta): (0, 0, 1) for the current batch, and the flags
    ``is_replay`` and ``replay_has_rows``. Each output slot is filled by one
    pass and zero in the other, so the sum over the passes is the step's.
    """
    logits, aux, stats = forward(
      self.model, params, p["stats"], p["images"], p["mask"], "sample", p["key"]
    )
    ce, rl, proto, correct = self._gated_terms(logits, aux, p["labels"], p["mask"])
    mse_logits = loss_terms.consistency_loss(logits, p["old_logits"], p["mask"])
    mse_attention = loss_terms.consistency_loss(aux["attention"], p["old_attention"], p["mask"])
    w = p["weights"]
    total = (
      w[0] * mse_logits + w[1] * mse_attention + w[2] * (ce + self.gamma * rl) + self.w_p * proto
    )
    agents = self.model.num_agents
    keep = aux["actions"].reshape(logits.shape[0], agents, -1).mean(-1)
    replay, current = p["is_replay"], ~p["is_replay"]
    sg = jax.lax.stop_gradient
    terms = {"ce": ce, "reinforce": rl, "prototype": proto}
    contribution = {
      "stats": two_pass.running_stats_share(stats, replay, p["replay_has_rows"]),
      "logits": two_pass.share(sg(logits), current),
      "attention": two_pass.share(sg(aux["attention"]), current),
      "metrics": {
        **two_pass.share(sg(terms), current),
        **two_pass.share({f"replay_{k}": sg(v) for k, v in terms.items()}, replay),
        **two_pass.share(
          {"mse_logits": sg(mse_logits), "mse_attention": sg(mse_attention)}, replay
        ),
        **two_pass.share(
          {"train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(p["mask"]), 1)}, current
        ),
        **two_pass.share(
          {f"keep_ratio_{l + 1}": losses.masked_mean(keep[:, l], p["mask"]) for l in range(agents)},
          current,
        ),
        "loss": sg(total),
      },
    }
    return total, contribution

  def parallel_grads(self, params, batch_stats, batch, replays, key):
    """``loss``'s gradient and output, the two passes on two devices (two_pass.py).

    The same terms, gates keys and BN chaining as ``loss``; the sums are
    grouped per pass, so the float rounding may differ.
    """
    ((replay, replay_mask),) = replays
    if replay.labels.shape != batch.labels.shape:
      raise ConfigError("train.parallel_passes needs batch_size = minibatch_size")
    both = lambda current, replayed: jnp.stack([current, replayed])
    has_rows = jnp.any(replay_mask)
    passes = {
      # The replay pass from zero statistics: its update is (1 - m) mu_r alone.
      "stats": jax.tree.map(lambda s: both(s, jnp.zeros_like(s)), batch_stats),
      "images": both(batch.images, replay.images),
      "labels": both(batch.labels, replay.labels),
      "mask": both(batch.mask, replay_mask),
      "key": jax.random.split(key),  # loss's (key_current, key_replay)
      "old_logits": both(jnp.zeros_like(replay.logits), replay.logits),
      "old_attention": both(jnp.zeros_like(replay.attention), replay.attention),
      "weights": jnp.array([[0.0, 0.0, 1.0], [self.alpha, self.alpha_p, self.beta]], jnp.float32),
      "is_replay": jnp.array([False, True]),
      "replay_has_rows": both(has_rows, has_rows),
    }
    grads, out = two_pass.sum_of_passes(self._pass_loss, params, passes)
    metrics = {
      k: out["metrics"][k]
      for k in (
        "ce",
        "reinforce",
        "prototype",
        "train_accuracy",
        *(f"keep_ratio_{l + 1}" for l in range(self.model.num_agents)),
        "replay_ce",
        "replay_reinforce",
        "replay_prototype",
        "mse_logits",
        "mse_attention",
        "loss",
      )
    }
    return grads, StepOutput(out["stats"], metrics, out["logits"], out["attention"])


@register
class DynamosNoBuffer(Dynamos):
  """Agents, reward and prototype loss on the current batch only (reference dynamos_sgd)."""

  name = "dynamos_nobuffer"
  buffer = "none"
