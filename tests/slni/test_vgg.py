"""VGG11-slim (docs/slni.md#networks): parameter counts, torchvision/PyTorch init, PyTorch's flatten
order, the ImageNet normalisation, the regularised layers and their probes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.slni.vgg import IMAGENET_MEAN, IMAGENET_STD, VGGSlim


def _count(model, side):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.uint8))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def _by_hand(side, heads, k, c=64, n=500):
  """Conv and Dense parameters counted from the layer table of docs/slni.md#networks."""
  chans = [3, c, 2 * c, 4 * c, 4 * c, 8 * c, 8 * c]
  conv = sum(9 * a * b + b for a, b in zip(chans[:-1], chans[1:]))
  flat = (side // 8) ** 2 * 8 * c  # Three 2x2 pools.
  return conv + flat * n + n + n * n + n + n * heads * k + heads * k


@pytest.mark.parametrize("side, heads, k", [(56, 1, 20), (56, 10, 20), (32, 10, 10)])
def test_parameter_counts(side, heads, k):
  count = _count(VGGSlim(heads=heads, num_classes=k), side)
  assert count == _by_hand(side, heads, k)
  if (side, heads, k) == (56, 1, 20):
    assert count == 17_305_884  # docs/slni.md#networks


def test_initialisation():
  model = VGGSlim(width=500, num_classes=20, heads=2)
  p = model.init(jax.random.key(0), jnp.zeros((1, 56, 56, 3), jnp.uint8))["params"]
  for i, c_out in enumerate((64, 128, 256, 256, 512, 512), start=1):
    w = np.asarray(p[f"conv{i}"]["kernel"])
    std = np.sqrt(2.0 / (9 * c_out))  # Kaiming normal on fan-out
    np.testing.assert_allclose(w.std(), std, rtol=0.08 if w.size < 1e5 else 0.02)
    assert np.all(np.asarray(p[f"conv{i}"]["bias"]) == 0)
  # Untruncated: a 1.2M-entry normal tensor has values beyond 4 std.
  assert np.abs(np.asarray(p["conv5"]["kernel"])).max() > 4 * np.sqrt(2.0 / (9 * 512))
  for name in ("fc1", "fc2"):
    np.testing.assert_allclose(np.asarray(p[name]["kernel"]).std(), 0.01, rtol=0.02)
    assert np.all(np.asarray(p[name]["bias"]) == 0)
  bound = 500**-0.5  # PyTorch's default Linear(500, 20) per head
  for leaf in (p["head"]["kernel"], p["head"]["bias"]):
    assert float(jnp.abs(leaf).max()) <= bound
  assert float(jnp.abs(p["head"]["kernel"]).max()) > 0.95 * bound
  assert p["head"]["kernel"].shape == (500, 40)


def test_flatten_order_normalisation_and_probes():
  model = VGGSlim(width=6, num_classes=3, heads=2, channels=2)
  x = jax.random.randint(jax.random.key(1), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), x)
  (logits, aux), state = model.apply(variables, x, capture_intermediates=True)
  assert logits.shape == (2, 6) and [a.shape for a in aux["act"]] == [(2, 6), (2, 6)]
  # fc1 reads the last convolution's ReLU output flattened channel-major, as PyTorch's
  # x.view(M, -1) of an [M, C, H, W] tensor.
  conv6 = state["intermediates"]["conv6"]["__call__"][0]  # [2, 2, 2, 16]
  torch_flat = np.transpose(np.maximum(np.asarray(conv6), 0), (0, 3, 1, 2)).reshape(2, -1)
  fc1 = variables["params"]["fc1"]
  np.testing.assert_allclose(
    aux["pre"][0],
    torch_flat @ np.asarray(fc1["kernel"]) + np.asarray(fc1["bias"]),
    rtol=1e-5,
    atol=1e-6,
  )
  # uint8 pixels: /255, then ImageNet mean and std.
  normalised = (np.asarray(x, np.float32) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(
    IMAGENET_STD
  )
  np.testing.assert_allclose(
    model.apply(variables, jnp.asarray(normalised, jnp.float32))[0], logits, rtol=1e-4, atol=1e-5
  )
  # Probes shift the pre-activations; their gradient is dJ/dz per sample.
  probes = (jnp.ones((2, 6)), jnp.zeros((2, 6)))
  _, shifted = model.apply(variables, x, probes)
  np.testing.assert_allclose(shifted["pre"][0], aux["pre"][0] + 1.0, rtol=1e-5)

  def objective(probes):
    return jnp.sum(model.apply(variables, x, probes)[1]["act"][1] ** 2)

  zeros = (jnp.zeros((2, 6)), jnp.zeros((2, 6)))
  g = jax.grad(objective)(zeros)[1]
  z2 = aux["pre"][1]
  np.testing.assert_allclose(g, 2 * jnp.maximum(z2, 0) * (z2 > 0), rtol=1e-5)
