"""VGG11-slim, the Tiny ImageNet network of SLNI (docs/slni.md#networks; the authors'
``VGGSlim.py``).

  conv3x3(c) relu pool | conv3x3(2c) relu pool | conv3x3(4c) relu conv3x3(4c) relu pool |
  conv3x3(8c) relu conv3x3(8c) relu | flatten | Dense(N) act | Dense(N) act | heads x K

with c = 64 and N = 500 in the paper (17,305,884 parameters with one 20-way
head at 56x56x3). Padding 1, stride 1, biases, no BatchNorm, no dropout. The
regularisers act on the two Dense layers only (the reference's
``in_layers [[], ['1', '3']]``), so the model returns their pre-activations
and outputs as the MLP does (``methods/slni/mlp.py``), with the same ``probes``.

Initialisation: torchvision's VGG scheme for the trunk (conv kernels
N(0, 2 / (9 C_out)), i.e. Kaiming normal on fan-out; Dense kernels
N(0, 0.01^2); zero biases) and PyTorch's default for the heads, which the
reference attaches fresh at every task (docs/slni.md#initialisation: the
authors' initial file could not be read, so this is the scheme that file was
made with by inference). Pixels: uint8 scaled by 1/255, then the ImageNet mean
and std (the reference's normalisation).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dynamos_jax.methods.slni.mlp import activate
from dynamos_jax.torch_init import torch_default_bias_init, torch_default_init

# Output channels of the six convolutions in units of the first stage's width;
# True after a convolution: a 2x2 max-pool follows.
_STAGES = ((1, True), (2, True), (4, False), (4, True), (8, False), (8, False))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's VGG init: kaiming_normal_(mode="fan_out", relu) for convs (an
# untruncated normal), normal_(0, 0.01) for Linear layers, zero biases.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.normal(0.01)


class VGGSlim(nn.Module):
  """Attributes: width N of the two Dense layers; num_classes K per head; heads
  (1: shared); activation of the Dense layers and its block (methods/slni/mlp.py);
  channels c of the first convolution (64 in the paper; small in tests)."""

  width: int = 500
  num_classes: int = 20
  heads: int = 1
  activation: str = "relu"
  block: int = 2
  channels: int = 64

  @nn.compact
  def __call__(self, images: jax.Array, probes: tuple[jax.Array, ...] | None = None):
    """Forward pass.

    Args:
      images: [M, H, W, 3] uint8 (scaled by 1/255, then ImageNet-normalised) or
        float (taken as already normalised); H = W = 56 in the paper.
      probes: optional zeros [M, N_l] per Dense layer, added to its
        pre-activation (the per-sample dJ/dz of the neuron importance).

    Returns:
      logits [M, heads * K] and ``{"pre": (z_1, z_2), "act": (h_1, h_2)}`` of the
      two Dense layers, [M, N_l] each.
    """
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = (x / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    for i, (mult, pool) in enumerate(_STAGES):
      x = nn.Conv(
        mult * self.channels,
        (3, 3),
        padding=1,
        kernel_init=conv_init,
        bias_init=nn.initializers.zeros,
        name=f"conv{i + 1}",
      )(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    # Flattened in PyTorch's channel-major order (C, H, W), so a kernel row means
    # what it means in the reference's Linear(25088, 500).
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    pre, act = [], []
    for layer in range(2):
      z = nn.Dense(
        self.width if layer == 0 else x.shape[-1],
        kernel_init=dense_init,
        bias_init=nn.initializers.zeros,
        name=f"fc{layer + 1}",
      )(x)
      if probes is not None:
        z = z + probes[layer]
      x = activate(z, self.activation, self.block)
      pre.append(z)
      act.append(x)
    logits = nn.Dense(
      self.heads * self.num_classes,
      kernel_init=torch_default_init,
      bias_init=torch_default_bias_init(x.shape[-1]),
      name="head",
    )(x)
    return logits, {"pre": tuple(pre), "act": tuple(act)}
