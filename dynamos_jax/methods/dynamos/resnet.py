"""The reduced ResNet-18 of Dynamos, gated or plain (docs/dynamos.md#the-network).

Stem (3x3 conv, 32) -> stage 1 (two plain residual blocks, 32 channels) ->
stage 2 (two residual blocks, 64 channels, the first with stride 2; each of
their 3x3 convolutions gated by an agent) -> global average pool -> linear.
With ``gated=False`` the same network has no agents (the agent-free baselines).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dynamos_jax.methods.dynamos.agent import Agent, GateMode
from dynamos_jax.torch_init import torch_default_bias_init, torch_default_init


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
  # Explicit PyTorch padding (k // 2 on each side) so strided convs sample the same pixels.
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    kernel_init=torch_default_init,
    name=name,
  )


def _bn(train: bool, name: str) -> nn.BatchNorm:
  # PyTorch BN defaults: momentum 0.1 (Flax counts the other way: 0.9), eps 1e-5.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual connection; optionally gated by two agents.

  The first agent's actions multiply conv a's output after BN and before ReLU;
  the second agent's multiply the sum of conv b's output and the shortcut, so a
  dropped channel is zero at the block output (docs/dynamos.md#the-network).
  """

  features: int
  stride: int = 1
  gated: bool = False
  temperature: float = 0.15
  reduction: int = 16
  agent_moments: bool = False

  @nn.compact
  def __call__(self, x, mode: GateMode, train: bool, bn_mask=None):
    """Args: x [B, H, W, C_in]. Returns (y [B, H', W', features], agent outputs list)."""
    use_agents = self.gated and mode != "off"
    agents = []
    h = _conv(self.features, 3, self.stride, "conv_a")(x)
    h = _bn(train, "bn_a")(h, mask=bn_mask)
    if use_agents:
      gate = Agent(
        self.features, self.reduction, self.temperature, self.agent_moments, name="agent_a"
      )(x, mode, train, bn_mask)
      h = h * gate["actions"][:, None, None, :]
      agents.append(gate)
    h = nn.relu(h)
    y = _conv(self.features, 3, 1, "conv_b")(h)
    y = _bn(train, "bn_b")(y, mask=bn_mask)
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = _conv(self.features, 1, self.stride, "shortcut_conv")(x)
      shortcut = _bn(train, "shortcut_bn")(shortcut, mask=bn_mask)
    else:
      shortcut = x
    y = y + shortcut
    if use_agents:
      gate = Agent(
        self.features, self.reduction, self.temperature, self.agent_moments, name="agent_b"
      )(h, mode, train, bn_mask)
      y = y * gate["actions"][:, None, None, :]
      agents.append(gate)
    return nn.relu(y), agents


class ResNet(nn.Module):
  """Reduced ResNet-18: nf=32, stages of (2, 2) blocks, agents in stage 2.

  Attributes:
    num_classes: K, the width of the linear head.
    gated: whether stage 2 has agents (Dynamos) or not (plain baselines).
    nf: base width.
    temperature: tau of the agents' probability layer.
    reduction: squeeze-excite reduction of the agents' MLP.
    agent_moments: the agents' conv -> BN -> pool from their input's moments
      (``Agent.moments``; config ``model.agent_moments``).
  """

  num_classes: int
  gated: bool = True
  nf: int = 32
  temperature: float = 0.15
  reduction: int = 16
  agent_moments: bool = False

  # The agents' layout, stated once: both blocks of stage 2 gate their two
  # convolutions, each agent 2 * nf channels wide, side by side in ``aux``.
  @property
  def num_agents(self) -> int:
    return 4 if self.gated else 0

  @property
  def attention_dim(self) -> int:
    """D: the width of ``aux["attention"]`` (0 without agents)."""
    return self.num_agents * 2 * self.nf

  @nn.compact
  def __call__(
    self,
    images: jax.Array,
    mode: GateMode = "threshold",
    train: bool = False,
    mask: jax.Array | None = None,
  ) -> tuple[jax.Array, dict[str, Any] | None]:
    """Forward pass.

    Args:
      images: [B, H, W, 3] uint8 (scaled to [0, 1] here) or float in [0, 1].
      mode: ``sample`` (Bernoulli actions, needs the ``gates`` rng), ``threshold``
        (actions = p >= 0.5) or ``off`` (no agents: a plain residual network).
      train: batch statistics in BN (and updates of the running ones).
      mask: optional [B] bool; only these samples count in BN batch statistics
        (padding of a partial batch, or of a replay batch drawn from a small buffer).

    Returns:
      logits [B, K] and, unless the agents are off, a dict with
      ``actions`` [B, D], ``attention`` [B, D], ``probs`` [B, D] (D =
      ``attention_dim``: the agents side by side) and ``log_prob`` [B, num_agents].
    """
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    bn_mask = None if mask is None else mask[:, None, None, None]
    x = _conv(self.nf, 3, 1, "conv1")(x)
    x = nn.relu(_bn(train, "bn1")(x, mask=bn_mask))
    gates = []
    for stage, (features, stride, gated) in enumerate(
      [(self.nf, 1, False), (2 * self.nf, 2, self.gated)], start=1
    ):
      for block in range(2):
        x, block_gates = BasicBlock(
          features,
          stride if block == 0 else 1,
          gated,
          self.temperature,
          self.reduction,
          self.agent_moments,
          name=f"layer{stage}_{block}",
        )(x, mode, train, bn_mask)
        gates += block_gates
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(
      self.num_classes,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(x.shape[-1]),
      name="head",
    )(x)
    if not gates:
      return logits, None
    aux = {
      k: jnp.concatenate([g[k] for g in gates], axis=-1) for k in ("actions", "attention", "probs")
    }
    aux["log_prob"] = jnp.stack([g["log_prob"] for g in gates], axis=-1)
    return logits, aux
