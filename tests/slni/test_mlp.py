"""The permuted-MNIST MLP: parameter counts of docs/slni.md#networks, PyTorch init, activations,
probes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.slni.mlp import MLP, activate

X = jnp.zeros((2, 28, 28, 1), jnp.uint8)


def _params(model):
  return model.init(jax.random.key(0), X)["params"]


@pytest.mark.parametrize(
  "width, count",
  [(8, 6442), (16, 13002), (32, 26506), (64, 55050), (128, 118282), (256, 269322), (512, 669706)],
)
def test_parameter_counts(width, count):
  params = _params(MLP(width))
  assert sum(p.size for p in jax.tree.leaves(params)) == count


def test_pytorch_default_initialisation_bounds():
  p = _params(MLP(64))
  for name, fan_in in (("fc1", 784), ("fc2", 64), ("head", 64)):
    bound = fan_in**-0.5
    for leaf in (p[name]["kernel"], p[name]["bias"]):
      assert float(jnp.abs(leaf).max()) <= bound
      if leaf.size >= 64:  # Uniform over the whole interval.
        assert float(jnp.abs(leaf).max()) > 0.9 * bound


def test_activations():
  z = jnp.array([[1.0, -2.0, -3.0, -1.0]])
  np.testing.assert_array_equal(activate(z, "relu", 2), [[1.0, 0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(activate(z, "maxout", 2), [[1.0, -1.0]])
  np.testing.assert_array_equal(activate(z, "lwta", 2), [[1.0, 0.0, 0.0, -1.0]])
  # LwTA: the gradient reaches winners only.
  g = jax.grad(lambda v: jnp.sum(activate(v, "lwta", 2) * jnp.arange(1.0, 5.0)))(z)
  np.testing.assert_array_equal(g, [[1.0, 0.0, 0.0, 4.0]])
  with pytest.raises(ValueError, match="unknown activation"):
    activate(z, "tanh", 2)


def test_maxout_halves_the_width_and_heads_sit_side_by_side():
  model = MLP(64, activation="maxout", heads=3)
  variables = model.init(jax.random.key(0), X)
  logits, aux = model.apply(variables, X)
  assert [h.shape[1] for h in aux["act"]] == [32, 16] and logits.shape == (2, 30)
  assert variables["params"]["fc2"]["kernel"].shape == (32, 32)


def test_probes_give_the_per_sample_gradient_wrt_preactivations():
  model = MLP(16)
  variables = model.init(jax.random.key(0), X)
  x = jax.random.randint(jax.random.key(1), (3, 28, 28, 1), 0, 256).astype(jnp.uint8)
  zeros = (jnp.zeros((3, 16)), jnp.zeros((3, 16)))

  def objective(probes):
    logits, _ = model.apply(variables, x, probes)
    return jnp.sum(logits**2)

  g1, _ = jax.grad(objective)(zeros)
  # By hand: d/dz1 through fc2 and head, masked by the ReLU of layer 1.
  p = variables["params"]
  logits, aux = model.apply(variables, x)
  dh2 = 2 * logits @ p["head"]["kernel"].T * (aux["pre"][1] > 0)
  dh1 = dh2 @ p["fc2"]["kernel"].T * (aux["pre"][0] > 0)
  np.testing.assert_allclose(g1, dh1, rtol=1e-4, atol=1e-6)
