"""The channel-gating agent of Dynamos (spec sections 2 and 3).

One agent sits beside each gated 3x3 convolution. It reads the same input as
the convolution, summarises it into an attention vector ``v`` and turns
``sigmoid(v / tau)`` into a binary keep/drop action per output channel.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

GateMode = Literal["sample", "threshold", "off"]

# PyTorch's default for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

# float32 machine epsilon: PyTorch's Bernoulli clips probabilities to [eps, 1 - eps]
# before taking logs, which also zeroes the gradient where the clip is active.
PROB_EPS = float(jnp.finfo(jnp.float32).eps)


def torch_default_bias_init(fan_in: int):
  """PyTorch's default bias initialiser, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = fan_in**-0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def bernoulli_log_prob(probs: jax.Array, actions: jax.Array) -> jax.Array:
  """Sum over channels of log Bernoulli(actions | probs), PyTorch-style clipped.

  Args:
    probs: [B, C] keep probabilities.
    actions: [B, C] in {0, 1}.

  Returns:
    [B] log-probabilities.
  """
  p = jnp.clip(probs, PROB_EPS, 1 - PROB_EPS)
  return jnp.sum(actions * jnp.log(p) + (1 - actions) * jnp.log1p(-p), axis=-1)


class Agent(nn.Module):
  """Pointwise conv -> BN -> global pool -> squeeze-excite MLP -> gate.

  Attributes:
    features: number of channels gated (the gated conv's output channels).
    reduction: hidden width of the MLP is ``features // reduction``.
    temperature: tau of the probability layer ``sigmoid(v / tau)``.
  """

  features: int
  reduction: int = 16
  temperature: float = 0.15

  @nn.compact
  def __call__(self, x: jax.Array, mode: GateMode, train: bool, bn_mask=None):
    """Computes the agent's actions.

    Args:
      x: [B, H, W, C_in] the gated convolution's input.
      mode: ``sample`` draws Bernoulli actions with the ``gates`` rng stream,
        ``threshold`` keeps channels with probability >= 0.5.
      train: BatchNorm uses batch statistics (and updates running ones) if True.
      bn_mask: optional [B, 1, 1, 1] bool, samples that count in BN statistics.

    Returns:
      A dict with ``actions`` [B, features] (float 0/1), ``attention`` (the
      paper's v) [B, features], ``probs`` [B, features] and ``log_prob`` [B]
      (log pi of the actions; meaningful in ``sample`` mode).
    """
    h = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=torch_default_init,
                name="pointwise")(x)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     name="bn")(h, mask=bn_mask)
    u = jnp.mean(h, axis=(1, 2))  # [B, features]
    hidden = self.features // self.reduction
    s = nn.Dense(hidden, kernel_init=torch_default_init,
                 bias_init=torch_default_bias_init(self.features), name="fc1")(u)
    s = nn.relu(s)
    s = nn.Dense(self.features, kernel_init=torch_default_init,
                 bias_init=torch_default_bias_init(hidden), name="fc2")(s)
    v = u * nn.sigmoid(s)
    probs = nn.sigmoid(v / self.temperature)
    if mode == "sample":
      key = self.make_rng("gates")
      actions = jax.random.bernoulli(key, probs).astype(probs.dtype)
    elif mode == "threshold":
      actions = (probs >= 0.5).astype(probs.dtype)
    else:
      raise ValueError(f"Agent called with gate mode {mode!r}; expected 'sample' or 'threshold'.")
    actions = jax.lax.stop_gradient(actions)
    return {"actions": actions, "attention": v, "probs": probs,
            "log_prob": bernoulli_log_prob(probs, actions)}
