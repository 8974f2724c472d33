"""dynamos_jax/conv.py: strided and transposed convolutions as stride-1 convolutions equal
XLA's own, in value and in first and second derivatives (WGAN-GP differentiates a
gradient), and the modules built on them keep their parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import conv
from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm.discriminator import Discriminator


def _xla(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(
    x, kernel, (stride, stride), (padding, padding), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _close(a, b, rtol):
  """Within ``rtol`` of ``a``'s largest magnitude. The derivatives are checked at 1e-4:
  a gradient of a gradient through tanh, summed in another order by another library's
  kernels (Eigen's or YNNPACK's, cpu_kernels), is 1e-5 apart at the largest entries; a
  wrong term would be off by O(1)."""
  scale = np.abs(np.asarray(a)).max()
  np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=rtol * scale)


def _gradient_penalty(f, kernel, x):
  """A WGAN-GP-like loss: the squared norm of d/dx of a nonlinear read-out of f(x)."""
  g = jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, kernel)) ** 2))(x)
  return jnp.sum(g**2) + jnp.sum(f(x, kernel))


# (batch, size, in, out, kernel, stride, padding): DGM's D (5x5, stride 2, pad 2) at each
# layer's shape, odd sizes, a 1x1 and an even kernel, stride 1, uneven padding.
CASES = [
  (3, 32, 1, 8, 5, 2, (2, 2)),
  (2, 16, 8, 16, 5, 2, (2, 2)),
  (2, 9, 3, 5, 3, 2, (1, 1)),
  (2, 8, 4, 6, 1, 2, (0, 0)),
  (2, 10, 3, 4, 4, 2, (1, 1)),
  (2, 11, 3, 4, 3, 3, (1, 2)),
  (2, 7, 3, 4, 3, 1, (1, 1)),
]


@pytest.mark.parametrize("n,size,c,f,k,s,p", CASES)
def test_space_to_depth_equals_the_strided_convolution(n, size, c, f, k, s, p):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, size, size, c)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, c, f)), jnp.float32)
  ours = lambda x, w: conv.conv_space_to_depth(x, w, s, p)
  theirs = lambda x, w: _xla(x, w, s, p)
  want = theirs(x, kernel)
  assert ours(x, kernel).shape == want.shape
  _close(want, ours(x, kernel), 1e-6)
  # First and second derivatives, with respect to both arguments.
  for a, b in zip(
    jax.grad(_gradient_penalty, (1, 2))(theirs, kernel, x),
    jax.jit(jax.grad(_gradient_penalty, (1, 2)), static_argnums=0)(ours, kernel, x),
  ):
    _close(a, b, 1e-4)


@pytest.mark.parametrize("size,cin,cout,stride,padding", [(4, 16, 8, 2, 1), (16, 4, 1, 2, 1)])
def test_transposed_convolution_equals_pytorchs_definition(size, cin, cout, stride, padding):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, size, size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(cin, cout, 4, 4)), jnp.float32)  # PyTorch's layout
  ours = lambda x, w: gen.conv_transpose(x, w, stride, padding, "space_to_depth")
  theirs = lambda x, w: gen.conv_transpose(x, w, stride, padding, "xla")
  want = theirs(x, w)
  assert want.shape == (2, (size - 1) * stride - 2 * padding + 4, *want.shape[2:])
  _close(want, ours(x, w), 1e-6)
  for a, b in zip(
    jax.grad(_gradient_penalty, (1, 2))(theirs, w, x),
    jax.grad(_gradient_penalty, (1, 2))(ours, w, x),
  ):
    _close(a, b, 1e-4)


def test_strided_conv_keeps_nn_convs_parameters_and_result():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 12, 12, 3)), jnp.float32)
  init = nn.initializers.normal(0.02)
  flax_conv = nn.Conv(4, (5, 5), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False)
  flax_conv = flax_conv.clone(kernel_init=init)
  want = flax_conv.init(jax.random.key(0), x)
  for implementation in ("xla", "space_to_depth"):
    module = conv.StridedConv(4, 5, 2, (2, 2), init, implementation)
    variables = module.init(jax.random.key(0), x)
    jax.tree.map(np.testing.assert_array_equal, variables, want)  # same tree, same draw
    _close(flax_conv.apply(want, x), module.apply(variables, x), 1e-6)


def test_discriminator_implementations_agree():
  x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, size=(4, 32, 32, 1)), jnp.float32)
  a, b = Discriminator(10, 8, conv="xla"), Discriminator(10, 8, conv="space_to_depth")
  variables = a.init(jax.random.key(0), x, train=False)
  assert jax.tree.structure(variables) == jax.tree.structure(
    b.init(jax.random.key(0), x, train=False)
  )
  for want, got in zip(a.apply(variables, x, train=False), b.apply(variables, x, train=False)):
    _close(want, got, 1e-5)


def test_auto_is_space_to_depth_on_cpu_only():
  assert conv.resolve("auto") == ("space_to_depth" if jax.default_backend() == "cpu" else "xla")
  assert conv.resolve("xla") == "xla"
