"""The channel-gating agent of Dynamos (docs/dynamos.md#the-agents).

One agent sits beside each gated 3x3 convolution. It reads the same input as
the convolution, summarises it into an attention vector ``v`` and turns
``sigmoid(v / tau)`` into a binary keep/drop action per output channel.
"""

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from dynamos_jax.torch_init import torch_default_bias_init, torch_default_init

GateMode = Literal["sample", "threshold", "off"]

# float32 machine epsilon: PyTorch's Bernoulli clips probabilities to [eps, 1 - eps]
# before taking logs, which also zeroes the gradient where the clip is active.
PROB_EPS = float(jnp.finfo(jnp.float32).eps)


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


class PointwiseKernel(nn.Module):
  """The [1, 1, C_in, features] kernel of a bias-free 1x1 ``nn.Conv``, declared alone.

  Same name, shape and initialiser as the ``nn.Conv`` it stands in for, so
  both layouts have one parameter tree and ``init`` draws the same values.
  """

  features: int

  @nn.compact
  def __call__(self, in_features: int) -> jax.Array:
    return self.param("kernel", torch_default_init, (1, 1, in_features, self.features))


class MomentBatchNorm(nn.Module):
  """BatchNorm of a pointwise conv's output, then the spatial mean, from input moments.

  The agent needs only ``u = mean_hw(BN(x W))`` [B, C]. A 1x1 convolution is
  linear, so BN's batch mean is ``mean_bhw(x) W`` and its second moment is
  ``diag(W^T E_bhw[x x^T] W)``; neither needs the [B, H, W, C] output. The
  variables (``scale``, ``bias``; ``batch_stats`` ``mean``, ``var``), the
  momentum convention, the biased "fast" variance ``E[h^2] - E[h]^2``
  clipped at 0, and the running-statistics update (skipped at init) are
  Flax ``nn.BatchNorm``'s, so the two layouts are interchangeable and
  differ only in float rounding.
  """

  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, kernel: jax.Array, train: bool, mask=None) -> jax.Array:
    """Args: x [B, H, W, C_in]; kernel [C_in, C]; mask [B, 1, 1, 1] bool or None.

    Returns u [B, C], the spatial mean of the normalised conv output.
    """
    features = kernel.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    sample_means = jnp.mean(x, axis=(1, 2))  # [B, C_in]
    u_lin = sample_means @ kernel  # [B, C]: mean_hw of the conv output
    if train:
      rows = (
        jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.reshape(x.shape[0]).astype(x.dtype)
      )
      count = jnp.sum(rows)
      # Every counted sample has H x W positions, so the mean over (B, H, W)
      # is the mean of the counted samples' spatial means.
      mean = (rows @ u_lin) / count
      # E_bhw[x x^T] over the counted rows: per-sample Gram matrices, weighted.
      gram = jnp.einsum("b,bij->ij", rows, jnp.einsum("bhwi,bhwj->bij", x, x))
      second = gram / (count * x.shape[1] * x.shape[2])  # [C_in, C_in]
      mean_sq = jnp.sum((second @ kernel) * kernel, axis=0)  # diag(W^T E[x x^T] W)
      var = jnp.maximum(0.0, mean_sq - mean * mean)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    else:
      mean, var = ra_mean.value, ra_var.value
    return (u_lin - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


class Agent(nn.Module):
  """Pointwise conv -> BN -> global pool -> squeeze-excite MLP -> gate.

  Attributes:
    features: number of channels gated (the gated conv's output channels).
    reduction: hidden width of the MLP is ``features // reduction``.
    temperature: tau of the probability layer ``sigmoid(v / tau)``.
    moments: compute conv -> BN -> pool from the input's moments
      (``MomentBatchNorm``) instead of materialising the [B, H, W, features]
      conv output: the same function and variables, other float rounding,
      less work, a faster step (docs/results.md#dynamos-beside-the-authors-code).
  """

  features: int
  reduction: int = 16
  temperature: float = 0.15
  moments: bool = False

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
    if self.moments:
      kernel = PointwiseKernel(self.features, name="pointwise")(x.shape[-1])
      u = MomentBatchNorm(name="bn")(x, kernel.reshape(kernel.shape[2:]), train, bn_mask)
    else:
      h = nn.Conv(
        self.features, (1, 1), use_bias=False, kernel_init=torch_default_init, name="pointwise"
      )(x)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(
        h, mask=bn_mask
      )
      u = jnp.mean(h, axis=(1, 2))  # [B, features]
    hidden = self.features // self.reduction
    s = nn.Dense(
      hidden,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(self.features),
      name="fc1",
    )(u)
    s = nn.relu(s)
    s = nn.Dense(
      self.features,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(hidden),
      name="fc2",
    )(s)
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
    return {
      "actions": actions,
      "attention": v,
      "probs": probs,
      "log_prob": bernoulli_log_prob(probs, actions),
    }
