"""PyTorch's default initialisers: the authors' code of all three systems is PyTorch,
and the ports start from the same distributions.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's default for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int):
  """PyTorch's default bias initialiser, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = fan_in**-0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init
