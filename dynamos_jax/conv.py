"""Strided convolutions as stride-1 convolutions of a space-to-depth input.

XLA:CPU (jaxlib 0.10) runs a stride-1 convolution and both its gradients in its fast
library kernels, but the weight gradient of a strided convolution is a convolution with
a dilated window, and WGAN-GP's gradient of the gradient adds more of them: those take a
generic loop far below the machine's matmul rate (DGMw at task 10: 0.151 it/s with
them, 1.871 with this module's convolutions;
docs/speed.md#where-the-time-goes-and-what-bounds-it).

A stride-s convolution is exactly a stride-1 convolution of the input rearranged into
s x s blocks: with the padded input ``xp`` and the kernel ``w`` zero-padded to a
multiple of s,

  y[o] = sum_i w[i] xp[s o + i] = sum_{a, b} w[s a + b] X[o + a, b],  X[m, b] = xp[s m + b],

so ``y`` is a stride-1 convolution of ``X`` (``xp`` space-to-depth, [H/s, W/s, s s C])
with the kernel ``W[a, (b, c)] = w[s a + b, c]`` ([k/s, k/s, s s C, F]). Every
convolution of the forward and backward passes is then stride 1; the rearrangements
are reshapes and transposes, and ``conv_stride1`` gives every derivative in the same fast
form. Equal to the strided convolution in real arithmetic (float sums in another order).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "xla", "space_to_depth")


def resolve(implementation: str) -> str:
  """``auto``: space-to-depth on CPU, XLA's own convolution elsewhere (cuDNN on GPU)."""
  if implementation == "auto":
    return "space_to_depth" if jax.default_backend() == "cpu" else "xla"
  return implementation


_NHWC = ("NHWC", "HWIO", "NHWC")


@jax.custom_vjp
def conv_stride1(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The stride-1, unpadded NHWC / HWIO convolution: x [N, H, W, C], kernel [k, k, C, F]
  -> [N, H - k + 1, W - k + 1, F].

  Both its gradients are written as this same convolution (of the padded output gradient
  with the flipped kernel; of the input with the output gradient, batch and channels
  swapped), so every derivative, the gradient of the gradient included, stays on
  XLA:CPU's fast kernels; JAX's own rules produce reversed-kernel convolutions in
  transposed layouts, which do not.
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)


def _conv_stride1_fwd(x, kernel):
  return conv_stride1(x, kernel), (x, kernel)


def _conv_stride1_bwd(residuals, dy):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  # dx: the full convolution of dy with the kernel flipped in space, C and F swapped.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = conv_stride1(jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0))), flipped)
  # dkernel: the batch as the contracted feature, x [C, H, W, N] convolved with dy
  # [Ho, Wo, N, F] as its kernel: [C, k, k, F].
  dkernel = conv_stride1(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3))
  return dx, dkernel.transpose(1, 2, 0, 3)


conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)


def _space_to_depth(x: jax.Array, s: int) -> jax.Array:
  """[N, H, W, C] -> [N, H/s, W/s, s * s * C], channel index (bh, bw, c)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // s, s, w // s, s, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // s, w // s, s * s * c)


def _kernel_to_depth(kernel: jax.Array, s: int) -> jax.Array:
  """[k, k, C, F] (k a multiple of s) -> [k/s, k/s, s * s * C, F], matching _space_to_depth."""
  k, _, c, f = kernel.shape
  kernel = kernel.reshape(k // s, s, k // s, s, c, f)
  return kernel.transpose(0, 2, 1, 3, 4, 5).reshape(k // s, k // s, s * s * c, f)


def conv_space_to_depth(
  x: jax.Array, kernel: jax.Array, stride: int, padding: tuple[int, int]
) -> jax.Array:
  """The NHWC / HWIO convolution of ``x`` [N, H, W, C] with ``kernel`` [k, k, C, F] at
  ``stride`` and explicit ``padding`` (low, high) on both spatial axes, computed as a
  stride-1 convolution (module docstring). Returns [N, Ho, Wo, F] as
  ``lax.conv_general_dilated`` would."""
  s, k = stride, kernel.shape[0]
  lo, hi = padding
  h, w = x.shape[1:3]
  out_h, out_w = (h + lo + hi - k) // s + 1, (w + lo + hi - k) // s + 1
  kp = -(-k // s) * s  # the kernel zero-padded to a multiple of s
  # Pad the input so that every output row has its kp-wide window and the size is a
  # multiple of s; the extra rows meet the kernel's zero taps or are cropped below.
  size_h, size_w = s * (out_h - 1) + kp, s * (out_w - 1) + kp
  x = jnp.pad(x, ((0, 0), (lo, max(size_h - h - lo, 0)), (lo, max(size_w - w - lo, 0)), (0, 0)))
  x = x[:, :size_h, :size_w]
  kernel = jnp.pad(kernel, ((0, kp - k), (0, kp - k), (0, 0), (0, 0)))
  y = conv_stride1(_space_to_depth(x, s), _kernel_to_depth(kernel, s))
  return y[:, :out_h, :out_w]


def conv_transpose_space_to_depth(
  x: jax.Array, kernel: jax.Array, stride: int, padding: int
) -> jax.Array:
  """The transposed convolution of ``x`` [N, H, W, F]: the adjoint of the stride-s
  convolution with ``kernel`` [k, k, C, F] (HWIO) and padding p, as PyTorch's
  ConvTranspose2d defines it; [N, (H - 1) s - 2 p + k, (W - 1) s - 2 p + k, C].

  Computed as that adjoint (``jax.vjp`` of ``conv_space_to_depth``), so it and all its
  derivatives are stride-1 convolutions: XLA's own form dilates the input, which
  XLA:CPU runs on its slow path.
  """
  k, c = kernel.shape[0], kernel.shape[2]
  n, h, w = x.shape[:3]
  shape = (n, (h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k, c)
  _, adjoint = jax.vjp(
    lambda z: conv_space_to_depth(z, kernel, stride, (padding, padding)), jnp.zeros(shape, x.dtype)
  )
  return adjoint(x)[0]


class StridedConv(nn.Module):
  """A square stride-s convolution without bias, ``nn.Conv``'s parameter (``kernel``
  [k, k, C, F]) and result, computed by XLA (``xla``) or as a stride-1 convolution of
  the space-to-depth input (``space_to_depth``; ``auto``: ``resolve``)."""

  features: int
  kernel_size: int
  stride: int
  padding: tuple[int, int]
  kernel_init: Callable[..., Any]
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    if resolve(self.implementation) == "space_to_depth":
      return conv_space_to_depth(x, kernel, self.stride, self.padding)
    return jax.lax.conv_general_dilated(
      x, kernel, (self.stride, self.stride), (self.padding, self.padding), dimension_numbers=_NHWC
    )
