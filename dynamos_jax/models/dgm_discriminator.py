"""DGM's discriminator: a WGAN-GP critic and an auxiliary classifier in one net (dgm-spec 2.2).

D is also the continual learner's classifier (an AC-GAN): three strided 5x5
convolutions on a 32x32 image, then two linear heads on the flattened
features, a critic value (WGAN-GP) and the class logits (the aux head):

  x [N, 32, 32, C] -> conv1 (ndf, 5, stride 2, pad 2), LeakyReLU 0.2         16x16
                   -> conv2 (2 ndf), BN, LeakyReLU 0.2                         8x8
                   -> conv3 (4 ndf), BN, LeakyReLU 0.2                         4x4
                   -> flatten (16 * 4 ndf = 2048 at ndf 32)
                   -> critic Linear(2048 -> 1), aux Linear(2048 -> K)

No biases in the convolutions, no dropout, no spectral norm. Initialisation as
the reference's PyTorch 1.0 (spec 2.4): convolutions N(0, 0.02), BN scale
N(1, 0.02) and bias 0, both linear heads PyTorch's default U(+-1/sqrt(fan_in))
for weight and bias. BatchNorm as PyTorch's (eps 1e-5, momentum 0.1, i.e.
Flax momentum 0.9); its running statistics live in ``batch_stats``. The aux
head is allocated for all K classes at once (spec 15.4): the method masks the
logits of unseen classes to -inf, which equals the reference's head of t + 1
outputs because D is re-initialised at every task.

Flattening is NHWC (H, W, C) here where PyTorch flattens (C, H, W): a fixed
permutation of the 2048 features, irrelevant for a net trained from scratch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# The reference's DCGAN-style initialisers (spec 2.4).
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
  """uint8 images [..., H, W, C] -> float32 in [-1, 1]: (x / 255 - 0.5) / 0.5 (spec 10)."""
  return (images.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def _conv(features: int, name: str) -> nn.Conv:
  # 5x5, stride 2, explicit PyTorch padding 2: 32 -> 16 -> 8 -> 4.
  return nn.Conv(features, (5, 5), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False,
                 kernel_init=conv_init, name=name)


def _bn(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      scale_init=bn_scale_init, name=name)


class Discriminator(nn.Module):
  """The MNIST/SVHN critic + classifier (spec 2.2).

  Attributes:
    num_classes: K, the aux head's width (all classes allocated).
    ndf: the width base (32 in every released config).
  """

  num_classes: int
  ndf: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool,
               mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
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
    h = nn.leaky_relu(_conv(self.ndf, "conv1")(x), _LEAK)
    h = _conv(2 * self.ndf, "conv2")(h)
    h = nn.leaky_relu(_bn(train, "bn2")(h, mask=bn_mask), _LEAK)
    h = _conv(4 * self.ndf, "conv3")(h)
    h = nn.leaky_relu(_bn(train, "bn3")(h, mask=bn_mask), _LEAK)
    h = h.reshape(h.shape[0], -1)
    fan_in = h.shape[-1]
    critic = nn.Dense(1, kernel_init=torch_linear_init(fan_in),
                      bias_init=torch_linear_init(fan_in), name="critic")(h)[:, 0]
    logits = nn.Dense(self.num_classes, kernel_init=torch_linear_init(fan_in),
                      bias_init=torch_linear_init(fan_in), name="aux")(h)
    return critic, logits


def init_discriminator(key: jax.Array, num_classes: int, channels: int,
                       ndf: int = 32) -> dict:
  """Fresh variables ``{"params", "batch_stats"}`` of a D for 32x32 images of ``channels``."""
  model = Discriminator(num_classes, ndf)
  return dict(model.init(key, jnp.zeros((2, 32, 32, channels)), train=False))


def param_count(params) -> int:
  """The number of trainable parameters in a params tree."""
  return sum(x.size for x in jax.tree.leaves(params))
