"""Each loss term against values worked out by hand, and the gradient paths."""

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import losses
from dynamos_jax.methods.dynamos import loss_terms
from dynamos_jax.methods.dynamos.agent import PROB_EPS, bernoulli_log_prob
from dynamos_jax.methods.dynamos.resnet import ResNet

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("losses")


def test_cross_entropy_is_mean_over_real_samples():
  logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0], [5.0, -5.0]])
  labels = jnp.array([0, 0, 1])
  mask = jnp.array([True, True, False])
  # -log(1/2) and -log(3/4); the padded third sample does not count.
  expected = (np.log(2.0) + np.log(4.0 / 3.0)) / 2
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, mask), expected, rtol=1e-6)


def test_reward_by_hand():
  logits = jnp.array([[2.0, 0.0], [2.0, 0.0]])  # both predict class 0
  labels = jnp.array([0, 1])  # sample 0 correct, sample 1 wrong
  actions = jnp.array([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])  # 2 agents x 2 channels
  r = loss_terms.reward(logits, actions, labels, keep_ratio=0.5, penalty=10.0, num_agents=2)
  # keep fractions [1, .5] and [0, 1]; wrong predictions are scaled by lambda.
  np.testing.assert_allclose(r, [[-0.25, 0.0], [-2.5, -2.5]], rtol=1e-6)


def test_reinforce_loss_by_hand_and_no_gradient_through_reward():
  log_prob = jnp.array([[-1.0, -2.0], [-0.5, -1.0], [-9.0, -9.0]])
  rewards = jnp.array([[-0.25, 0.0], [-2.5, -2.5], [-1.0, -1.0]])
  mask = jnp.array([True, True, False])
  # mean over 2 samples x 2 agents of -R * log pi.
  expected = (-0.25 + 0.0 - 1.25 - 2.5) / 4
  np.testing.assert_allclose(
    loss_terms.reinforce_loss(log_prob, rewards, mask), expected, rtol=1e-6
  )
  grad_r = jax.grad(lambda r: loss_terms.reinforce_loss(log_prob, r, mask))(rewards)
  np.testing.assert_array_equal(grad_r, 0.0)
  grad_lp = jax.grad(lambda lp: loss_terms.reinforce_loss(lp, rewards, mask))(log_prob)
  np.testing.assert_allclose(grad_lp, -rewards * mask[:, None] / 4, rtol=1e-6)


def test_reward_has_no_gradient():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
  actions = jnp.array([[1.0, 0.0], [1.0, 1.0]])
  g = jax.grad(
    lambda z: jnp.sum(
      loss_terms.reward(z, actions, jnp.array([0, 0]), keep_ratio=0.7, penalty=500.0, num_agents=1)
    )
  )(logits)
  np.testing.assert_array_equal(g, 0.0)


def test_prototype_loss_unordered_pairs_by_hand():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [7.0, 7.0]])
  labels = jnp.array([0, 0, 1, 0])
  correct = jnp.array([True, True, True, False])  # the 4th is ignored
  # Same-class pair (0,1): d = 1. Different: (0,2): 4, (1,2): 5. Per-pair MSE = d / D, D = 2.
  within, between = 1.0 / 2, (4.0 + 5.0) / 2
  expected = (1 + within) / (1 + between)
  np.testing.assert_allclose(
    loss_terms.prototype_loss(attention, labels, correct), expected, rtol=1e-6
  )


def test_prototype_loss_needs_three_correct():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0, 1])
  assert float(loss_terms.prototype_loss(attention, labels, jnp.array([True, True, False]))) == 0.0
  assert float(loss_terms.prototype_loss(attention, labels, jnp.array([True, True, True]))) > 0.0


def test_prototype_loss_gradient_flows_through_numerator_and_denominator():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0, 1])
  g = jax.grad(loss_terms.prototype_loss)(attention, labels, jnp.array([True, True, True]))
  # Analytic gradient of (1 + d01/2) / (1 + (d02 + d12)/2) w.r.t. V1[0]:
  # dN/dV1 = (V1 - V0) = [1, 0], dM/dV1 = (V1 - V2) = [1, -2]
  n, m = 1.5, 5.5
  expected_v1 = (np.array([1.0, 0.0]) * m - n * np.array([1.0, -2.0])) / m**2
  np.testing.assert_allclose(g[1], expected_v1, rtol=1e-5)


def test_consistency_is_elementwise_mean_over_real_rows():
  new = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
  old = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
  mask = jnp.array([True, True, False])
  np.testing.assert_allclose(
    loss_terms.consistency_loss(new, old, mask), (1 + 4 + 9 + 4) / 6, rtol=1e-6
  )
  g = jax.grad(lambda o: loss_terms.consistency_loss(new, o, mask))(old)
  np.testing.assert_array_equal(g, 0.0)  # stored values are targets


def test_log_prob_clips_at_float32_epsilon():
  probs = jnp.array([[1.0, 0.0, 0.25]])
  actions = jnp.array([[1.0, 1.0, 0.0]])
  expected = np.log1p(-PROB_EPS) + np.log(PROB_EPS) + np.log(0.75)
  np.testing.assert_allclose(bernoulli_log_prob(probs, actions), [expected], rtol=1e-6)
  g = jax.grad(lambda p: bernoulli_log_prob(p, actions).sum())(probs)
  np.testing.assert_allclose(g, [[0.0, 0.0, -1 / 0.75]], rtol=1e-6)  # clipped: no gradient


@pytest.fixture(scope="module")
def gated_forward():
  model = ResNet(num_classes=4, nf=8, reduction=4)
  images = jax.random.uniform(jax.random.key(0), (6, 8, 8, 3))
  variables = model.init(
    {"params": jax.random.key(1), "gates": jax.random.key(2)}, images, "sample", True
  )

  def forward(params):
    (logits, aux), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      images,
      "sample",
      True,
      rngs={"gates": jax.random.key(3)},
      mutable=["batch_stats"],
    )
    return logits, aux

  return forward, variables["params"]


# The four agents in the order of aux's columns (docs/dynamos.md#the-network), and the backbone
# units upstream of each agent's input: agent l's losses may reach exactly
# these (and agent l itself), nothing else.
AGENTS = [
  ("layer2_0", "agent_a"),
  ("layer2_0", "agent_b"),
  ("layer2_1", "agent_a"),
  ("layer2_1", "agent_b"),
]
_STAGE_1 = {"conv1", "bn1", "layer1_0", "layer1_1"}
_BLOCK_1 = {
  "layer2_0/" + u for u in ("conv_a", "bn_a", "conv_b", "bn_b", "shortcut_conv", "shortcut_bn")
}
UPSTREAM = [
  _STAGE_1,  # agent 1 reads the stage-1 output
  _STAGE_1 | {"layer2_0/conv_a", "layer2_0/bn_a"},  # agent 2: block 2.1's masked conv a
  _STAGE_1 | _BLOCK_1,  # agent 3: block 2.1's output
  _STAGE_1 | _BLOCK_1 | {"layer2_1/conv_a", "layer2_1/bn_a"},  # agent 4: block 2.2's conv a
]


def _leaves_by_owner(grads):
  """{(owner, leaf path): gradient}; owner is an agent index 0-3 or a backbone unit name."""
  out = {}
  for path, g in flax.traverse_util.flatten_dict(grads).items():
    if path[1:2] and path[1].startswith("agent"):
      owner = AGENTS.index(path[:2])
    elif path[0].startswith("layer2"):
      owner = "/".join(path[:2])
    else:
      owner = path[0]
    out[owner, "/".join(path)] = np.asarray(g)
  return out


@pytest.fixture(scope="module")
def loss_gradients(gated_forward):
  """Gradients w.r.t. every parameter of: agent l's policy and prototype losses (l = 1..4),
  both losses over all agents, and the cross-entropy; one jacobian, one compile."""
  forward, params = gated_forward
  labels = jnp.array([0, 1, 2, 3, 0, 1])
  mask = jnp.ones(6, bool)
  width = 16  # 2 * nf channels per agent

  def all_losses(p):
    logits, aux = forward(p)
    r = loss_terms.reward(
      logits, aux["actions"], labels, keep_ratio=0.7, penalty=500.0, num_agents=4
    )
    policy = [
      loss_terms.reinforce_loss(aux["log_prob"][:, l : l + 1], r[:, l : l + 1], mask)
      for l in range(4)
    ]
    proto = [
      loss_terms.prototype_loss(aux["attention"][:, l * width : (l + 1) * width], labels, mask)
      for l in range(4)
    ]
    return jnp.stack(
      policy
      + proto
      + [
        loss_terms.reinforce_loss(aux["log_prob"], r, mask),
        loss_terms.prototype_loss(aux["attention"], labels, mask),
        losses.cross_entropy(logits, labels, mask),
      ]
    )

  jac = jax.jit(jax.jacrev(all_losses))(params)
  rows = {}
  for l in range(4):
    rows["policy", l] = jax.tree.map(lambda x, l=l: x[l], jac)
    rows["prototype", l] = jax.tree.map(lambda x, l=l: x[4 + l], jac)
  rows["policy", "all"] = jax.tree.map(lambda x: x[8], jac)
  rows["prototype", "all"] = jax.tree.map(lambda x: x[9], jac)
  rows["ce"] = jax.tree.map(lambda x: x[10], jac)
  return {k: _leaves_by_owner(v) for k, v in rows.items()}


def _nonzero(g):
  return float(np.abs(g).max()) > 0.0


def test_cross_entropy_does_not_reach_agents(loss_gradients):
  g = loss_gradients["ce"]
  for (owner, path), value in g.items():
    if isinstance(owner, int):
      assert not _nonzero(value), path  # actions are sampled: no path into any agent
    else:
      assert _nonzero(value), path  # every backbone unit and the head are on CE's path
  assert {o for o, _ in g if isinstance(o, int)} == {0, 1, 2, 3}


@pytest.mark.parametrize("loss", ["policy", "prototype"])
@pytest.mark.parametrize("agent", [0, 1, 2, 3])
def test_each_agents_losses_reach_that_agent_and_what_feeds_it_only(loss_gradients, loss, agent):
  g = loss_gradients[loss, agent]
  for (owner, path), value in g.items():
    should = owner == agent or owner in UPSTREAM[agent]
    assert _nonzero(value) == should, (path, "expected a gradient" if should else "expected none")


@pytest.mark.parametrize("loss", ["policy", "prototype"])
def test_policy_and_prototype_losses_reach_all_agents_and_backbone(loss_gradients, loss):
  g = loss_gradients[loss, "all"]
  for (owner, path), value in g.items():
    # Every agent's every leaf, and everything that feeds an agent; not the
    # last block's conv b nor the head, which come after every agent's input.
    should = owner not in ("layer2_1/conv_b", "layer2_1/bn_b", "head")
    assert _nonzero(value) == should, path
