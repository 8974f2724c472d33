"""DGM's discriminator: a WGAN-GP critic and an auxiliary classifier in one net.

See docs/dgm.md#dcgan-discriminator.

D is also the continual learner's classifier (an AC-GAN): three strided 5x5
convolutions on a 32x32 image, then two linear heads on the flattened
features, a critic value (WGAN-GP) and the class logits (the aux head):

  x [N, 32, 32, C] -> conv1 (ndf, 5, stride 2, pad 2), LeakyReLU 0.2         16x16
                   -> conv2 (2 ndf), BN, LeakyReLU 0.2                         8x8
                   -> conv3 (4 ndf), BN, LeakyReLU 0.2                         4x4
                   -> flatten (16 * 4 ndf = 2048 at ndf 32)
                   -> critic Linear(2048 -> 1), aux Linear(2048 -> K)

No biases in the convolutions, no dropout, no spectral norm. Initialisation as
the reference's PyTorch 1.0 (docs/dgm.md#initialisation): convolutions
N(0, 0.02), BN scale N(1, 0.02) and bias 0, both linear heads PyTorch's default
U(+-1/sqrt(fan_in)) for weight and bias. BatchNorm as PyTorch's (eps 1e-5,
momentum 0.1, i.e. Flax momentum 0.9); its running statistics live in
``batch_stats``. The aux head is allocated for all K classes at once
(docs/dgm.md#aux-head-over-all-classes): the method masks the logits of unseen
classes to -inf, which equals the reference's head of t + 1 outputs because D
is re-initialised at every task.

Flattening is NHWC (H, W, C) here where PyTorch flattens (C, H, W): a fixed
permutation of the 2048 features, irrelevant for a net trained from scratch.

``ResNetDiscriminator`` is the ImageNet-50 D (docs/dgm.md#imagenet-networks;
ResNet-18 trunk, 2048-unit neck), with its parameter counts checked; the dgm
method runs it on ``dgm-imagenet50`` (``methods/dgm/imagenet.py``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dynamos_jax.conv import StridedConv

# The reference's DCGAN-style initialisers (docs/dgm.md#initialisation).
conv_init = nn.initializers.normal(0.02)
_LEAK = 0.2


def bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm scale ~ N(1, 0.02), as the reference's ``weights_init``."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def torch_linear_init(fan_in: int):
  """PyTorch's default for a Linear's weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = fan_in**-0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 images [..., H, W, C] -> float32 in [-1, 1]: (x / 255 - 0.5) / 0.5.

  See docs/dgm.md#data-and-preprocessing.
  """
  return (images.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def _conv(features: int, name: str, implementation: str) -> StridedConv:
  # 5x5, stride 2, explicit PyTorch padding 2: 32 -> 16 -> 8 -> 4.
  return StridedConv(features, 5, 2, (2, 2), conv_init, implementation, name=name)


BN_MOMENTUM = 0.9  # Flax's: running = 0.9 running + 0.1 batch (PyTorch's momentum 0.1)


def _bn(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=1e-5,
    scale_init=bn_scale_init,
    name=name,
  )


class Discriminator(nn.Module):
  """The MNIST/SVHN critic + classifier (docs/dgm.md#dcgan-discriminator).

  Attributes:
    num_classes: K, the aux head's width (all classes allocated).
    ndf: the width base (32 in every released config).
    conv: how the strided convolutions are computed (``conv.StridedConv``; the
      parameters and, up to float rounding, the results are the same).
  """

  num_classes: int
  ndf: int = 32
  conv: str = "auto"

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool, mask: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
    """Args:
      x: float32 [N, 32, 32, C] in [-1, 1] (``to_unit`` of the uint8 images).
      train: batch statistics (and their running averages updated: call with
        ``mutable=["batch_stats"]``) or the running statistics.
      mask: bool [N], False for padding rows, which then do not enter the
        BatchNorm statistics (their outputs are still computed, and ignored).

    Returns:
      critic: float32 [N], the WGAN critic value.
      logits: float32 [N, num_classes], the aux head's class logits.
    """
    bn_mask = None if mask is None else mask[:, None, None, None]
    h = nn.leaky_relu(_conv(self.ndf, "conv1", self.conv)(x), _LEAK)
    h = _conv(2 * self.ndf, "conv2", self.conv)(h)
    h = nn.leaky_relu(_bn(train, "bn2")(h, mask=bn_mask), _LEAK)
    h = _conv(4 * self.ndf, "conv3", self.conv)(h)
    h = nn.leaky_relu(_bn(train, "bn3")(h, mask=bn_mask), _LEAK)
    h = h.reshape(h.shape[0], -1)
    fan_in = h.shape[-1]
    critic = nn.Dense(
      1, kernel_init=torch_linear_init(fan_in), bias_init=torch_linear_init(fan_in), name="critic"
    )(h)[:, 0]
    logits = nn.Dense(
      self.num_classes,
      kernel_init=torch_linear_init(fan_in),
      bias_init=torch_linear_init(fan_in),
      name="aux",
    )(h)
    return critic, logits


# --- ImageNet: a CIFAR-style ResNet-18 trunk, a 2048-unit neck, the two heads --------------
# (docs/dgm.md#imagenet-networks).
# PyTorch 1.0's defaults (the ImageNet D is not passed through the DCGAN initialiser):
# convolutions and linear layers U(+-1/sqrt(fan_in)), BatchNorm scale U(0, 1), bias 0.
torch_conv_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch10_bn_scale_init(key, shape, dtype=jnp.float32):
  """PyTorch 1.0's BatchNorm weight default, U(0, 1) (1 from PyTorch 1.2 on)."""
  return jax.random.uniform(key, shape, dtype)


class _Block(nn.Module):
  """The reference's BasicBlock: 3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut, ReLU."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool, bn_mask=None):
    bn = lambda name: nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      scale_init=torch10_bn_scale_init,
      name=name,
    )
    conv = lambda f, k, s, name: nn.Conv(
      f,
      (k, k),
      strides=(s, s),
      padding=((k // 2, k // 2),) * 2,
      use_bias=False,
      kernel_init=torch_conv_init,
      name=name,
    )
    h = nn.relu(bn("bn_a")(conv(self.features, 3, self.stride, "conv_a")(x), mask=bn_mask))
    h = bn("bn_b")(conv(self.features, 3, 1, "conv_b")(h), mask=bn_mask)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = bn("bn_short")(conv(self.features, 1, self.stride, "conv_short")(x), mask=bn_mask)
    return nn.relu(h + x)


class ResNetDiscriminator(nn.Module):
  """The ImageNet-50 critic + classifier (``networks/net_DGMw_imnet.py``'s netD).

  See docs/dgm.md#imagenet-networks.

  CIFAR-style ResNet-18 (3x3 stem of 64, no max-pool, [2, 2, 2, 2] basic
  blocks of 64-512 channels, 4x4 average pool) -> Linear(512 -> 2048), BN1d
  (momentum 0.01), ReLU -> critic Linear(2048 -> 1) and aux Linear(2048 -> K,
  no bias). ``width`` scales the four stages (width, 2, 4, 8 width) and
  ``blocks`` is their depth (64 and 2: ResNet-18's), for tests at tiny sizes.
  """

  num_classes: int
  feature_size: int = 2048
  width: int = 64
  blocks: int = 2

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    """x float32 [N, 32, 32, 3] -> (critic [N], logits [N, num_classes])."""
    bn_mask = None if mask is None else mask[:, None, None, None]
    h = nn.Conv(
      self.width,
      (3, 3),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=torch_conv_init,
      name="stem",
    )(x)
    h = nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      scale_init=torch10_bn_scale_init,
      name="stem_bn",
    )(h, mask=bn_mask)
    h = nn.relu(h)
    for stage, features in enumerate(self.width * m for m in (1, 2, 4, 8)):
      for b in range(self.blocks):
        h = _Block(features, 2 if stage and not b else 1, name=f"layer{stage + 1}_{b}")(
          h, train, bn_mask
        )
    h = jnp.mean(h, axis=(1, 2))  # the 4x4 average pool of a 32x32 input
    h = nn.Dense(
      self.feature_size,
      kernel_init=torch_linear_init(8 * self.width),
      bias_init=torch_linear_init(8 * self.width),
      name="neck",
    )(h)
    h = nn.BatchNorm(
      use_running_average=not train,
      momentum=0.99,
      epsilon=1e-5,
      scale_init=torch10_bn_scale_init,
      name="neck_bn",
    )(h, mask=None if mask is None else mask[:, None])
    h = nn.relu(h)
    fan_in = self.feature_size
    critic = nn.Dense(
      1, kernel_init=torch_linear_init(fan_in), bias_init=torch_linear_init(fan_in), name="critic"
    )(h)[:, 0]
    logits = nn.Dense(
      self.num_classes, use_bias=False, kernel_init=torch_linear_init(fan_in), name="aux"
    )(h)
    return critic, logits


def init_discriminator(key: jax.Array, num_classes: int, channels: int, ndf: int = 32) -> dict:
  """Fresh variables ``{"params", "batch_stats"}`` of a D for 32x32 images of ``channels``."""
  model = Discriminator(num_classes, ndf)
  return dict(model.init(key, jnp.zeros((2, 32, 32, channels)), train=False))
