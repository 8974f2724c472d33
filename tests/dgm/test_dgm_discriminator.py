"""DGM's discriminator: parameter counts (docs/dgm.md#parameter-counts), the initialisation
(docs/dgm.md#initialisation), masked BN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.dgm import discriminator as dgm_d


def param_count(params) -> int:
  """The number of trainable parameters in a params tree."""
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize("channels, base", [(1, 259_233), (3, 260_833)])
@pytest.mark.parametrize("k", [1, 10])
def test_parameter_count_matches_the_reference(channels, base, k):
  """docs/dgm.md#parameter-counts: D = 259 233 + 2049 K (MNIST, one channel), 260 833 + 2049 K
  (SVHN)."""
  variables = jax.eval_shape(lambda: dgm_d.init_discriminator(jax.random.key(0), k, channels))
  assert param_count(variables["params"]) == base + 2049 * k
  # BatchNorm statistics are state, not parameters: conv2 (64) and conv3 (128) channels.
  stats = variables["batch_stats"]
  assert stats["bn2"]["mean"].shape == (64,) and stats["bn3"]["var"].shape == (128,)


def test_shapes_and_to_unit():
  variables = dgm_d.init_discriminator(jax.random.key(1), 10, 3, ndf=8)
  x = dgm_d.to_unit(jnp.zeros((5, 32, 32, 3), jnp.uint8))
  critic, logits = dgm_d.Discriminator(10, 8).apply(variables, x, train=False)
  assert critic.shape == (5,) and logits.shape == (5, 10)
  np.testing.assert_allclose(
    dgm_d.to_unit(jnp.array([0, 255, 51], jnp.uint8)),
    [-1.0, 1.0, (51 / 255 - 0.5) / 0.5],
    rtol=1e-6,
  )


def test_initialisation_distributions():
  """Convs N(0, 0.02), BN scale N(1, 0.02) and bias 0, heads U(+-1/sqrt(2048)), on large draws."""
  keys = jax.random.split(jax.random.key(2), 8)
  draws = [dgm_d.init_discriminator(k, 10, 1)["params"] for k in keys]
  conv = np.concatenate(
    [np.ravel(p[name]["kernel"]) for p in draws for name in ("conv1", "conv2", "conv3")]
  )
  assert conv.size > 2_000_000
  assert abs(conv.mean()) < 1e-3 and abs(conv.std() - 0.02) < 2e-4
  # A normal's 4-sigma tail is 6e-5 of the draws; a uniform of that std has none.
  assert np.mean(np.abs(conv) > 0.08) > 1e-5

  scale = np.concatenate([np.ravel(p[b]["scale"]) for p in draws for b in ("bn2", "bn3")])
  big = np.asarray(dgm_d.bn_scale_init(jax.random.key(3), (200_000,)))
  for s, tol in ((scale, 0.006), (big, 3e-4)):
    assert abs(s.mean() - 1.0) < tol / 2 and abs(s.std() - 0.02) < tol
  for p in draws:
    assert not np.any(p["bn2"]["bias"]) and not np.any(p["bn3"]["bias"])

  bound = 2048**-0.5
  weights = np.concatenate([np.ravel(p[h]["kernel"]) for p in draws for h in ("aux", "critic")])
  biases = np.concatenate([np.ravel(p[h]["bias"]) for p in draws for h in ("aux", "critic")])
  assert np.abs(weights).max() <= bound and np.abs(weights).max() > 0.99 * bound
  # U(-b, b): mean 0, variance b^2 / 3.
  assert abs(weights.mean()) < 0.01 * bound and abs(weights.var() / (bound**2 / 3) - 1) < 0.02
  assert np.abs(biases).max() <= bound and np.abs(biases).max() > 0.5 * bound
  big = np.asarray(dgm_d.torch_linear_init(2048)(jax.random.key(4), (100_000,)))
  assert abs(big.var() / (bound**2 / 3) - 1) < 0.02


def test_masked_batchnorm_ignores_padding_rows():
  """Padding rows (any values) change neither the running statistics nor the real rows' outputs."""
  model = dgm_d.Discriminator(10, 8)
  variables = dgm_d.init_discriminator(jax.random.key(5), 10, 1, ndf=8)
  real = jax.random.uniform(jax.random.key(6), (6, 32, 32, 1), minval=-1, maxval=1)
  junk = 50.0 * jax.random.normal(jax.random.key(7), (4, 32, 32, 1))
  padded = jnp.concatenate([real, junk])
  mask = jnp.arange(10) < 6

  (c0, z0), s0 = model.apply(variables, real, train=True, mutable=["batch_stats"])
  (c1, z1), s1 = model.apply(variables, padded, train=True, mask=mask, mutable=["batch_stats"])
  np.testing.assert_allclose(c1[:6], c0, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(z1[:6], z0, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(s0), jax.tree.leaves(s1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Without the mask the junk rows move the statistics (the test can fail).
  _, s2 = model.apply(variables, padded, train=True, mutable=["batch_stats"])
  assert not np.allclose(s2["batch_stats"]["bn2"]["var"], s0["batch_stats"]["bn2"]["var"])


def test_running_statistics_follow_pytorch_momentum():
  """Running mean after one train forward = 0.9 * 0 + 0.1 * the batch mean of conv2's output."""
  model = dgm_d.Discriminator(2, 4)
  variables = dgm_d.init_discriminator(jax.random.key(8), 2, 1, ndf=4)
  x = jax.random.uniform(jax.random.key(9), (3, 32, 32, 1), minval=-1, maxval=1)
  _, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
  p = variables["params"]
  h = jax.nn.leaky_relu(
    jax.lax.conv_general_dilated(
      x, p["conv1"]["kernel"], (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    ),
    0.2,
  )
  h = jax.lax.conv_general_dilated(
    h, p["conv2"]["kernel"], (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  expected = 0.1 * np.asarray(h).reshape(-1, 8).mean(0)
  np.testing.assert_allclose(state["batch_stats"]["bn2"]["mean"], expected, rtol=1e-4, atol=1e-7)


def test_imagenet_resnet_discriminator_counts():
  """docs/dgm.md#imagenet-networks: the ResNet-18 trunk has 11 168 832 parameters; D ~ 12.25 M
  with 10 outputs."""
  model = dgm_d.ResNetDiscriminator(10)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=False)
  )
  params = variables["params"]
  trunk = {k: v for k, v in params.items() if k not in ("neck", "neck_bn", "critic", "aux")}
  assert param_count(trunk) == 11_168_832
  # + neck 512 x 2048 + 2048, BN1d 2 x 2048, aux 2048 x 10 (no bias), critic 2049.
  assert param_count(params) == 11_168_832 + 1_050_624 + 4_096 + 20_480 + 2_049
  assert "bias" not in params["aux"]


def test_imagenet_resnet_discriminator_runs_with_masked_bn():
  model = dgm_d.ResNetDiscriminator(3, feature_size=16)
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
  variables = model.init(jax.random.key(2), x, train=False)
  (critic, logits), _ = model.apply(
    variables, x, train=True, mask=jnp.array([1, 1, 1, 0], bool), mutable=["batch_stats"]
  )
  assert critic.shape == (4,) and logits.shape == (4, 3)
  scale = np.asarray(variables["params"]["neck_bn"]["scale"])
  assert scale.min() >= 0 and scale.max() <= 1 and scale.std() > 0.1  # PyTorch 1.0: U(0, 1)
