"""The gated ResNet: size, gate modes, and where the agents' masks act."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.models.agent import Agent
from dynamos_jax.models.resnet import ResNet


def _count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def test_parameter_counts_match_the_reference():
  images = jnp.zeros((2, 28, 28, 3), jnp.uint8)
  gated = ResNet(10).init({"params": jax.random.key(0), "gates": jax.random.key(1)}, images,
                          "sample", True)
  plain = ResNet(10, gated=False).init(jax.random.key(0), images, "off")
  assert _count(gated["params"]) == 187_578  # spec 1.2
  assert _count(plain["params"]) == 170_410
  agent_1 = gated["params"]["layer2_0"]["agent_a"]
  assert _count(agent_1) == 2_756


@pytest.fixture(scope="module")
def tiny():
  model = ResNet(num_classes=5, nf=8, reduction=4)
  images = jax.random.randint(jax.random.key(0), (4, 8, 8, 3), 0, 256).astype(jnp.uint8)
  variables = model.init({"params": jax.random.key(1), "gates": jax.random.key(2)}, images,
                         "sample", True)
  return model, images, variables


def test_gate_modes(tiny):
  model, images, variables = tiny
  logits, aux = model.apply(variables, images, "sample", False, rngs={"gates": jax.random.key(3)})
  assert logits.shape == (4, 5)
  assert aux["actions"].shape == aux["attention"].shape == aux["probs"].shape == (4, 64)
  assert aux["log_prob"].shape == (4, 4)
  assert set(np.unique(aux["actions"])) <= {0.0, 1.0}
  _, thr = model.apply(variables, images, "threshold", False)
  # Thresholding p = sigmoid(v / tau) at 0.5 is keeping channels with v >= 0.
  np.testing.assert_array_equal(thr["actions"], (thr["attention"] >= 0).astype(np.float32))
  off_logits, off_aux = model.apply(variables, images, "off", False)
  assert off_aux is None and off_logits.shape == (4, 5)


def test_sampling_uses_the_key(tiny):
  model, images, variables = tiny
  sample = lambda k: model.apply(variables, images, "sample", False, rngs={"gates": k})[1]
  a, b, c = sample(jax.random.key(5)), sample(jax.random.key(5)), sample(jax.random.key(6))
  np.testing.assert_array_equal(a["actions"], b["actions"])
  assert not np.array_equal(a["actions"], c["actions"])


def _force_actions(overrides):
  """Interceptor replacing chosen agents' actions: {(block, agent): value}."""

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if isinstance(module, Agent) and context.method_name == "__call__":
      key = (module.parent.name, module.name)
      if key in overrides:
        out = dict(out, actions=jnp.full_like(out["actions"], overrides[key]))
    return out

  return nn.intercept_methods(interceptor)


def test_all_ones_masks_equal_the_ungated_network(tiny):
  model, images, variables = tiny
  ones = {(b, a): 1.0 for b in ("layer2_0", "layer2_1") for a in ("agent_a", "agent_b")}
  with _force_actions(ones):
    gated, _ = model.apply(variables, images, "threshold", False)
  plain, _ = model.apply(variables, images, "off", False)
  np.testing.assert_allclose(gated, plain, rtol=1e-6, atol=1e-6)


def test_second_agent_also_masks_the_shortcut(tiny):
  model, images, variables = tiny
  with _force_actions({("layer2_1", "agent_b"): 0.0}):
    logits, _ = model.apply(variables, images, "threshold", False)
  # Every channel of the last block is dropped, shortcut included: the pooled
  # features are zero and only the head's bias is left.
  np.testing.assert_allclose(logits, jnp.broadcast_to(variables["params"]["head"]["bias"],
                                                      logits.shape), atol=1e-6)


def test_first_agent_masks_after_batchnorm_before_relu(tiny):
  model, images, variables = tiny
  # A non-zero BN running mean makes BN(0) != 0: masking before BN would let
  # conv_b see non-zero input; masking after BN leaves it nothing.
  stats = jax.tree.map(lambda x: x, variables["batch_stats"])
  stats["layer2_1"]["bn_a"]["mean"] = -jnp.ones_like(stats["layer2_1"]["bn_a"]["mean"])
  params = variables["params"]
  perturbed = jax.tree.map(lambda x: x, params)
  perturbed["layer2_1"]["conv_b"]["kernel"] = params["layer2_1"]["conv_b"]["kernel"] + 1.0
  with _force_actions({("layer2_1", "agent_a"): 0.0, ("layer2_1", "agent_b"): 1.0}):
    a, _ = model.apply({"params": params, "batch_stats": stats}, images, "threshold", False)
    b, _ = model.apply({"params": perturbed, "batch_stats": stats}, images, "threshold", False)
  np.testing.assert_allclose(a, b, atol=1e-6)
  # Without the mask the perturbation does change the output (the test can fail).
  c, _ = model.apply({"params": perturbed, "batch_stats": stats}, images, "off", False)
  d, _ = model.apply({"params": params, "batch_stats": stats}, images, "off", False)
  assert not np.allclose(c, d)


def test_bn_mask_ignores_padding(tiny):
  model, images, variables = tiny
  padded = jnp.concatenate([images, jnp.full_like(images, 255)])
  mask = jnp.array([True] * 4 + [False] * 4)
  run = lambda x, m: model.apply(variables, x, "off", True, m, mutable=["batch_stats"])
  (logits_a, _), stats_a = run(images, None)
  (logits_b, _), stats_b = run(padded, mask)
  np.testing.assert_allclose(logits_a, logits_b[:4], rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
               stats_a, stats_b)
