"""The permuted-MNIST MLP of SLNI (docs/slni.md#networks): 784 -> N -> N -> heads x K.

Two hidden Dense layers, each followed by the activation under study:
``relu``; ``maxout`` (the max of consecutive blocks of ``block`` units, so a
layer's output is N / block wide and the next layer's input shrinks); or
``lwta`` (local winner takes all: in each block the largest unit keeps its
value, the others are zero; width kept). PyTorch's default initialisation,
or the hidden layers from the authors' shipped initial model (``load_hidden``).
The output layer holds ``heads`` heads of K logits side by side (one: a
shared head).
"""

import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.errors import ConfigError, require
from dynamos_jax.torch_init import torch_default_bias_init, torch_default_init

ACTIVATIONS = ("relu", "maxout", "lwta")
# Our hidden layers and the state_dict names of the authors' MNIST_Net under which
# reference/slni/export_initial.py stores them (docs/slni.md#initialisation).
TORCH_LAYERS = {"fc1": "classifier.0", "fc2": "classifier.2"}


def activate(z: jax.Array, kind: str, block: int) -> jax.Array:
  """The activation of a hidden layer's pre-activation ``z`` [M, N]."""
  if kind == "relu":
    return nn.relu(z)
  blocks = z.reshape(*z.shape[:-1], z.shape[-1] // block, block)
  if kind == "maxout":
    return jnp.max(blocks, axis=-1)
  if kind == "lwta":
    # The winner is chosen on values without gradient; only winners pass one.
    winner = jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(blocks), -1), block, dtype=z.dtype)
    return (blocks * winner).reshape(z.shape)
  raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
  return nn.Dense(
    features, kernel_init=torch_default_init, bias_init=torch_default_bias_init(fan_in), name=name
  )


class MLP(nn.Module):
  """Attributes: width N; num_classes K; heads (1: shared); activation and its block."""

  width: int
  num_classes: int = 10
  heads: int = 1
  activation: str = "relu"
  block: int = 2

  @nn.compact
  def __call__(self, images: jax.Array, probes: tuple[jax.Array, ...] | None = None):
    """Forward pass.

    Args:
      images: [M, ...] uint8 (scaled by 1/255) or float; flattened.
      probes: optional zeros [M, N_l] per hidden layer, added to its
        pre-activation: the gradient w.r.t. them is dJ/dz per sample (the
        neuron importance's quantity).

    Returns:
      logits [M, heads * K] and ``{"pre": (z_1, z_2), "act": (h_1, h_2)}``.
    """
    x = images.reshape(images.shape[0], -1).astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    pre, act = [], []
    for layer in range(2):
      z = _dense(self.width if layer == 0 else x.shape[-1], x.shape[-1], f"fc{layer + 1}")(x)
      if probes is not None:
        z = z + probes[layer]
      x = activate(z, self.activation, self.block)
      pre.append(z)
      act.append(x)
    logits = _dense(self.heads * self.num_classes, x.shape[-1], "head")(x)
    return logits, {"pre": tuple(pre), "act": tuple(act)}


def load_hidden(path: str, shapes: dict) -> dict[str, dict[str, np.ndarray]]:
  """The hidden layers stored at ``path`` as our params (docs/slni.md#initialisation).

  The npz holds the authors' layers in PyTorch's layout: ``classifier.0.weight``
  [N, D] and ``classifier.0.bias`` [N] (fc1), ``classifier.2.weight`` [N, N] and
  ``classifier.2.bias`` [N] (fc2); a Dense kernel is [in, out], the transpose.

  Args:
    path: the npz of reference/slni/export_initial.py.
    shapes: the MLP's params or their shapes (``jax.eval_shape``), for the check.

  Returns:
    ``{"fc1": {"kernel": [D, N], "bias": [N]}, "fc2": {...}}``, float32.

  Raises ConfigError (one line) when the file is unreadable or a shape differs.
  """
  where = f"slni.init_weights={path}"
  try:
    f = np.load(path)
    if not isinstance(f, np.lib.npyio.NpzFile):
      raise ValueError("a single array, not an .npz archive")
    with f:
      stored = {k: f[k] for k in f.files}
  except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
    raise ConfigError(
      f"{where}: cannot read it as an .npz ({type(e).__name__}: {e}); "
      "make it with reference/slni/export_initial.py"
    ) from None
  inputs, width = shapes["fc1"]["kernel"].shape
  hidden = {}
  for ours, theirs in TORCH_LAYERS.items():
    kernel, bias = shapes[ours]["kernel"].shape, shapes[ours]["bias"].shape
    for suffix, want in (("weight", kernel[::-1]), ("bias", bias)):
      key = f"{theirs}.{suffix}"
      require(key in stored, f"{where}: no array {key!r} ({ours}); it holds {sorted(stored)}")
      got = stored[key]
      require(
        got.shape == tuple(want) and np.issubdtype(got.dtype, np.floating),
        f"{where}: {key} is {got.dtype} {list(got.shape)}, but {ours} of this MLP "
        f"({inputs} inputs, slni.width={width}) needs float {list(want)} ([out, in]): "
        "export the file of this width",
      )
    hidden[ours] = {
      "kernel": np.asarray(stored[f"{theirs}.weight"], np.float32).T,
      "bias": np.asarray(stored[f"{theirs}.bias"], np.float32),
    }
  return hidden
