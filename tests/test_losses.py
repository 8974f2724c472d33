"""Each loss term against values worked out by hand, and the gradient paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import losses
from dynamos_jax.models.agent import PROB_EPS, bernoulli_log_prob
from dynamos_jax.models.resnet import ResNet


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
  r = losses.reward(logits, actions, labels, keep_ratio=0.5, penalty=10.0, num_agents=2)
  # keep fractions [1, .5] and [0, 1]; wrong predictions are scaled by lambda.
  np.testing.assert_allclose(r, [[-0.25, 0.0], [-2.5, -2.5]], rtol=1e-6)


def test_reinforce_loss_by_hand_and_no_gradient_through_reward():
  log_prob = jnp.array([[-1.0, -2.0], [-0.5, -1.0], [-9.0, -9.0]])
  rewards = jnp.array([[-0.25, 0.0], [-2.5, -2.5], [-1.0, -1.0]])
  mask = jnp.array([True, True, False])
  # mean over 2 samples x 2 agents of -R * log pi.
  expected = (-0.25 + 0.0 - 1.25 - 2.5) / 4
  np.testing.assert_allclose(losses.reinforce_loss(log_prob, rewards, mask), expected, rtol=1e-6)
  grad_r = jax.grad(lambda r: losses.reinforce_loss(log_prob, r, mask))(rewards)
  np.testing.assert_array_equal(grad_r, 0.0)
  grad_lp = jax.grad(lambda lp: losses.reinforce_loss(lp, rewards, mask))(log_prob)
  np.testing.assert_allclose(grad_lp, -rewards * mask[:, None] / 4, rtol=1e-6)


def test_reward_has_no_gradient():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
  actions = jnp.array([[1.0, 0.0], [1.0, 1.0]])
  g = jax.grad(lambda z: jnp.sum(losses.reward(z, actions, jnp.array([0, 0]), keep_ratio=0.7,
                                               penalty=500.0, num_agents=1)))(logits)
  np.testing.assert_array_equal(g, 0.0)


def test_prototype_loss_unordered_pairs_by_hand():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [7.0, 7.0]])
  labels = jnp.array([0, 0, 1, 0])
  correct = jnp.array([True, True, True, False])  # the 4th is ignored
  # Same-class pair (0,1): d = 1. Different: (0,2): 4, (1,2): 5. Per-pair MSE = d / D, D = 2.
  within, between = 1.0 / 2, (4.0 + 5.0) / 2
  expected = (1 + within) / (1 + between)
  np.testing.assert_allclose(losses.prototype_loss(attention, labels, correct), expected,
                             rtol=1e-6)


def test_prototype_loss_needs_three_correct():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0, 1])
  assert float(losses.prototype_loss(attention, labels, jnp.array([True, True, False]))) == 0.0
  assert float(losses.prototype_loss(attention, labels, jnp.array([True, True, True]))) > 0.0


def test_prototype_loss_gradient_flows_through_numerator_and_denominator():
  attention = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0, 1])
  g = jax.grad(losses.prototype_loss)(attention, labels, jnp.array([True, True, True]))
  # Analytic gradient of (1 + d01/2) / (1 + (d02 + d12)/2) w.r.t. V1[0]:
  # dN/dV1 = (V1 - V0) = [1, 0], dM/dV1 = (V1 - V2) = [1, -2]
  n, m = 1.5, 5.5
  expected_v1 = (np.array([1.0, 0.0]) * m - n * np.array([1.0, -2.0])) / m**2
  np.testing.assert_allclose(g[1], expected_v1, rtol=1e-5)


def test_consistency_is_elementwise_mean_over_real_rows():
  new = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
  old = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
  mask = jnp.array([True, True, False])
  np.testing.assert_allclose(losses.consistency_loss(new, old, mask), (1 + 4 + 9 + 4) / 6,
                             rtol=1e-6)
  g = jax.grad(lambda o: losses.consistency_loss(new, o, mask))(old)
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
  variables = model.init({"params": jax.random.key(1), "gates": jax.random.key(2)}, images,
                         "sample", True)

  def forward(params):
    (logits, aux), _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                   images, "sample", True, rngs={"gates": jax.random.key(3)},
                                   mutable=["batch_stats"])
    return logits, aux

  return forward, variables["params"]


def _agent_leaves(tree):
  return [v for path, v in jax.tree_util.tree_leaves_with_path(tree)
          if any("agent" in str(k) for k in path)]


def test_cross_entropy_does_not_reach_agents(gated_forward):
  forward, params = gated_forward
  labels = jnp.array([0, 1, 2, 3, 0, 1])
  mask = jnp.ones(6, bool)
  g = jax.grad(lambda p: losses.cross_entropy(forward(p)[0], labels, mask))(params)
  assert all(float(jnp.abs(x).max()) == 0.0 for x in _agent_leaves(g))
  assert float(jnp.abs(g["head"]["kernel"]).max()) > 0.0


def test_policy_and_prototype_losses_reach_agents_and_backbone(gated_forward):
  forward, params = gated_forward
  labels = jnp.array([0, 1, 2, 3, 0, 1])
  mask = jnp.ones(6, bool)

  def policy(p):
    logits, aux = forward(p)
    r = losses.reward(logits, aux["actions"], labels, keep_ratio=0.7, penalty=500.0,
                      num_agents=4)
    return losses.reinforce_loss(aux["log_prob"], r, mask)

  def proto(p):
    _, aux = forward(p)
    return losses.prototype_loss(aux["attention"], labels, mask)

  for fn in (policy, proto):
    g = jax.grad(fn)(params)
    assert all(float(jnp.abs(x).max()) > 0.0 for x in _agent_leaves(g)[:1])
    assert float(jnp.abs(g["conv1"]["kernel"]).max()) > 0.0  # through the agents' input
    assert float(jnp.abs(g["head"]["kernel"]).max()) == 0.0  # the head is not on the path
