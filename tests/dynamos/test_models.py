"""The gated ResNet: size, gate modes, and where the agents' masks act."""

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.dynamos.agent import Agent
from dynamos_jax.methods.dynamos.resnet import ResNet

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("models")


def _count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def test_parameter_counts_match_the_reference():
  images = jnp.zeros((2, 28, 28, 3), jnp.uint8)
  gated = ResNet(10).init(
    {"params": jax.random.key(0), "gates": jax.random.key(1)}, images, "sample", True
  )
  plain = ResNet(10, gated=False).init(jax.random.key(0), images, "off")
  assert _count(gated["params"]) == 187_578  # docs/dynamos.md#the-network
  assert _count(plain["params"]) == 170_410
  agent_1 = gated["params"]["layer2_0"]["agent_a"]
  assert _count(agent_1) == 2_756


@pytest.fixture(scope="module")
def tiny():
  model = ResNet(num_classes=5, nf=8, reduction=4)
  images = jax.random.randint(jax.random.key(0), (4, 8, 8, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(
    {"params": jax.random.key(1), "gates": jax.random.key(2)}, images, "sample", True
  )
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
  np.testing.assert_allclose(
    logits, jnp.broadcast_to(variables["params"]["head"]["bias"], logits.shape), atol=1e-6
  )


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
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), stats_a, stats_b
  )


def _capture_agent_inputs(patterns):
  """Interceptor recording each agent's input and replacing chosen agents' actions.

  patterns: {(block, agent): [C] 0/1 actions for every sample}. Fills and
  returns ``seen``: {(block, agent): the input array the agent was called with}.
  """
  seen = {}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if isinstance(module, Agent) and context.method_name == "__call__":
      key = (module.parent.name, module.name)
      seen[key] = args[0]
      if key in patterns:
        out = dict(out, actions=jnp.broadcast_to(patterns[key], out["actions"].shape))
    return out

  return nn.intercept_methods(interceptor), seen


def test_second_agent_reads_the_masked_post_relu_output_of_conv_a(tiny):
  model, images, variables = tiny
  rng = np.random.default_rng(0)
  # Running statistics far from (0, 1), so that BN's place matters.
  stats = jax.tree_util.tree_map_with_path(
    lambda p, x: jnp.asarray(
      rng.normal(0.0, 0.5, x.shape) if p[-1].key == "mean" else rng.uniform(0.5, 2.0, x.shape),
      x.dtype,
    ),
    variables["batch_stats"],
  )
  params = variables["params"]
  pattern = jnp.asarray(np.arange(16) % 3 != 0, jnp.float32)  # drops channels 0, 3, 6, ...
  patterns = {("layer2_0", "agent_a"): pattern, ("layer2_1", "agent_a"): pattern}
  interceptor, seen = _capture_agent_inputs(patterns)
  with interceptor:
    model.apply({"params": params, "batch_stats": stats}, images, "threshold", False)

  for block, stride in (("layer2_0", 2), ("layer2_1", 1)):
    x = seen[block, "agent_a"]  # the block's input: the first agent reads it
    # conv a (3x3, PyTorch padding 1) and eval-mode BN, written out here.
    y = jax.lax.conv_general_dilated(
      x,
      params[block]["conv_a"]["kernel"],
      (stride, stride),
      ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    bn, bn_stats = params[block]["bn_a"], stats[block]["bn_a"]
    y = (y - bn_stats["mean"]) / jnp.sqrt(bn_stats["var"] + 1e-5) * bn["scale"] + bn["bias"]
    expected = np.maximum(np.asarray(y) * np.asarray(pattern), 0.0)
    got = np.asarray(seen[block, "agent_b"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The alternatives differ, so the check can fail: unmasked, or masked before ReLU.
    assert not np.allclose(got, np.maximum(np.asarray(y), 0.0), atol=1e-3)
    assert not np.allclose(got, np.asarray(y) * np.asarray(pattern), atol=1e-3)


def _torch_default_bound(fan_in):
  """PyTorch's default init bound: kaiming_uniform(a=sqrt(5)) gives gain * sqrt(3 / fan_in)
  with gain = sqrt(2 / (1 + a^2)) = sqrt(1 / 3), i.e. 1 / sqrt(fan_in); biases
  U(+-1/sqrt(fan_in))."""
  gain = np.sqrt(2.0 / (1.0 + 5.0))
  return gain * np.sqrt(3.0 / fan_in)


def test_initialisation_is_pytorchs_default():
  """Convs and linears U(-b, b), b = 1/sqrt(fan_in); BN scale 1, bias 0, stats 0/1.

  See docs/dynamos.md#initialisation.
  """
  model = ResNet(10)
  variables = model.init(
    {"params": jax.random.key(0), "gates": jax.random.key(1)},
    jnp.zeros((2, 28, 28, 3), jnp.uint8),
    "sample",
    True,
  )
  flat = flax.traverse_util.flatten_dict(variables["params"])
  scaled = []  # every weight and bias over its bound: together U(-1, 1)
  kinds = {"conv": 0, "linear": 0, "bn": 0}
  for path, w in flat.items():
    w = np.asarray(w, np.float64)
    layer = flat.get(path[:-1] + ("kernel",))
    if path[-1] == "kernel" and w.ndim == 4:  # conv, [kh, kw, C_in, C_out]
      assert path[:-1] + ("bias",) not in flat, path  # convs have no bias
      bound, kinds["conv"] = _torch_default_bound(np.prod(w.shape[:-1])), kinds["conv"] + 1
    elif path[-1] in ("kernel", "bias") and layer is not None and layer.ndim == 2:  # linear
      bound = _torch_default_bound(layer.shape[0])  # [in, out]: fan_in = in, bias included
      kinds["linear"] += path[-1] == "kernel"
    else:  # BN
      assert path[-1] in ("scale", "bias"), path
      np.testing.assert_array_equal(w, 1.0 if path[-1] == "scale" else 0.0)
      kinds["bn"] += path[-1] == "scale"
      continue
    assert np.abs(w).max() <= bound * (1 + 1e-6), path
    # Big enough tensors reach close to the bound (a smaller bound would fail).
    if w.size >= 64:
      assert np.abs(w).max() >= 0.9 * bound, path
    scaled.append((w / bound).ravel())
  # 9 backbone convs + 1 shortcut + 4 agents' pointwise; head + 2 per agent; 8 + 1 + 1 + 4 BNs.
  assert kinds == {"conv": 14, "linear": 9, "bn": 14}
  scaled = np.concatenate(scaled)
  assert scaled.size == 187_578 - 2 * sum(
    np.asarray(v).size for k, v in flat.items() if k[-1] == "scale"
  )
  # Uniform on (-1, 1): mean 0, second moment 1/3, half the mass within 1/2.
  assert abs(scaled.mean()) < 0.01
  assert abs(np.mean(scaled**2) - 1 / 3) < 0.01
  assert abs(np.mean(np.abs(scaled) < 0.5) - 0.5) < 0.01
  for name, stat in flax.traverse_util.flatten_dict(variables["batch_stats"]).items():
    np.testing.assert_array_equal(stat, 0.0 if name[-1] == "mean" else 1.0)
