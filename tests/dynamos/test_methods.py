"""The baselines: each loss against a hand computation, buffer filling rules, runs end to end."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import chunks, methods, trainer
from dynamos_jax.config import base_config
from dynamos_jax.data.streams import Batch, EpochData
from dynamos_jax.methods.dynamos import buffer as buffer_lib
from dynamos_jax.methods.dynamos.resnet import ResNet

import dynamos_reference as ref

# What a method reads of the benchmark when it is built.
TEN_CLASSES = types.SimpleNamespace(num_classes=10)


def _np_cross_entropy(logits, labels):
  logits = np.asarray(logits, np.float64)
  z = logits - logits.max(-1, keepdims=True)
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.mean(log_softmax[np.arange(len(labels)), labels])


@pytest.fixture
def fixed(tiny_data):
  """An agent-free tiny network, a current batch and two replay minibatches."""
  model = ResNet(10, gated=False, nf=8, reduction=4)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 3), jnp.uint8), "off", True)
  x, y = tiny_data.train_images, tiny_data.train_labels
  batch = Batch(jnp.asarray(x[:5]), jnp.asarray(y[:5]), jnp.ones(5, bool))
  rng = np.random.default_rng(0)

  def replay(rows, real):
    logits = jnp.asarray(rng.normal(size=(len(rows), 10)), jnp.float32)
    return (
      buffer_lib.Replay(
        jnp.asarray(x[rows]), jnp.asarray(y[rows]), logits, jnp.zeros((len(rows), 0))
      ),
      jnp.asarray(real),
    )

  replays = (
    replay([40, 60, 80, 100], [True, True, True, False]),
    replay([20, 50, 70, 110], [True, True, True, True]),
  )
  return model, variables, batch, replays


def _forward(model, variables, images, mask):
  """A train-mode forward of the real rows, written out here: (logits, new batch stats)."""
  (z, _), s = model.apply(variables, images, "off", True, mask, mutable=["batch_stats"])
  return np.asarray(z), {"params": variables["params"], **s}


def test_baseline_is_eq8(fixed):
  model, variables, batch, replays = fixed
  config = base_config()
  config.dynamos.alpha, config.dynamos.beta = 0.3, 1.7  # Eq. 8 takes Eq. 7's weights.
  config.model.nf, config.model.mlp_reduction = 8, 4
  method = methods.REGISTRY["baseline"].from_config(config, TEN_CLASSES)
  assert method.model == model
  loss, out = method.loss(
    variables["params"], variables["batch_stats"], batch, replays[:1], jax.random.key(0)
  )
  (replay, real) = replays[0]
  z, v1 = _forward(model, variables, batch.images, batch.mask)
  zm, v2 = _forward(model, v1, replay.images, real)  # second forward after the first's BN update
  r = np.asarray(real)
  expected = (
    _np_cross_entropy(z, batch.labels)
    + 0.3 * np.mean((zm[r] - np.asarray(replay.logits)[r]) ** 2)
    + 1.7 * _np_cross_entropy(zm[r], np.asarray(replay.labels)[r])
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, out.batch_stats, v2["batch_stats"])
  np.testing.assert_allclose(out.logits, z, rtol=1e-6)


def test_er_is_cross_entropy_of_the_concatenated_batch(fixed):
  model, variables, batch, replays = fixed
  method = methods.REGISTRY["er"](model=model, lr=0.1)
  loss, out = method.loss(
    variables["params"], variables["batch_stats"], batch, replays[:1], jax.random.key(0)
  )
  replay, real = replays[0]
  r = np.asarray(real)
  images = jnp.concatenate([batch.images, replay.images])
  z, v = _forward(model, variables, images, jnp.concatenate([batch.mask, real]))
  labels = np.concatenate([batch.labels, replay.labels])
  keep = np.concatenate([np.ones(5, bool), r])
  np.testing.assert_allclose(loss, _np_cross_entropy(z[keep], labels[keep]), rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, out.batch_stats, v["batch_stats"])
  assert out.logits.shape == (5, 10)  # only the current batch goes into the buffer


def test_derpp_uses_logits_of_the_first_draw_and_labels_of_the_second(fixed):
  model, variables, batch, replays = fixed
  config = base_config()
  config.derpp.alpha, config.derpp.beta = 0.4, 0.9
  config.model.nf, config.model.mlp_reduction = 8, 4
  method = methods.REGISTRY["derpp"].from_config(config, TEN_CLASSES)
  assert method.reservoir.draws == 2 and not method.reservoir.insert_if_correct
  loss, out = method.loss(
    variables["params"], variables["batch_stats"], batch, replays, jax.random.key(0)
  )
  (m1, real1), (m2, real2) = replays
  z, v = _forward(model, variables, batch.images, batch.mask)
  z1, v = _forward(model, v, m1.images, real1)
  z2, v = _forward(model, v, m2.images, real2)
  r1 = np.asarray(real1)
  expected = (
    _np_cross_entropy(z, batch.labels)
    + 0.4 * np.mean((z1[r1] - np.asarray(m1.logits)[r1]) ** 2)
    + 0.9 * _np_cross_entropy(z2, m2.labels)
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, out.batch_stats, v["batch_stats"])


def test_dynamos_nobuffer_is_eq7_without_the_replay_terms(tiny_data, tiny_config):
  # Weights all different from each other and from the defaults.
  tiny_config.dynamos.update(
    gamma=0.6, w_p=0.25, kr=0.55, lam=37.0, alpha=0.3, beta=1.7, alpha_p=0.45
  )
  d = tiny_config.dynamos
  method = methods.REGISTRY["dynamos_nobuffer"].from_config(tiny_config, TEN_CLASSES)
  assert method.gated and method.reservoir is None
  model = method.model
  variables = model.init(
    {"params": jax.random.key(0), "gates": jax.random.key(1)},
    jnp.zeros((2, 8, 8, 3), jnp.uint8),
    "sample",
    True,
  )
  images = jnp.asarray(tiny_data.train_images[::12][:10])
  key = jax.random.key(2)
  # The loss's own forward: train mode, gates drawn with the first half of its key.
  (z, aux), _ = jax.jit(
    lambda v, x, k: model.apply(
      v, x, "sample", True, jnp.ones(10, bool), rngs={"gates": k}, mutable=["batch_stats"]
    )
  )(variables, images, jax.random.split(key)[0])
  # Labels from the predictions: four right (the prototype term is on), six wrong.
  pred = np.argmax(z, -1)
  labels = np.where(np.arange(10) < 4, pred, (pred + 1) % 10).astype(np.int32)
  batch = Batch(images, jnp.asarray(labels), jnp.ones(10, bool))
  loss, out = jax.jit(lambda p, s, b, k: method.loss(p, s, b, (), k))(
    variables["params"], variables["batch_stats"], batch, key
  )
  assert not any(k.startswith(("replay", "mse")) for k in out.metrics)

  z64, a64, v64 = (np.asarray(x, np.float64) for x in (z, aux["actions"], aux["attention"]))
  is_correct = ref.correct(z, labels)
  assert is_correct.sum() == 4
  terms = {
    "ce": ref.cross_entropy(np, z64, labels),
    "reinforce": ref.reinforce(
      np, ref.log_prob(np, v64, a64, d.tau, 4), ref.rewards(z, a64, labels, d.kr, d.lam, 4)
    ),
    "prototype": ref.prototype(np, v64, labels, is_correct),
  }
  for name, value in terms.items():
    assert abs(value) > 1e-3, name
    np.testing.assert_allclose(out.metrics[name], value, rtol=2e-5, err_msg=name)
  expected = terms["ce"] + d.gamma * terms["reinforce"] + d.w_p * terms["prototype"]
  np.testing.assert_allclose(loss, expected, rtol=2e-5)
  np.testing.assert_allclose(out.metrics["train_accuracy"], 0.4, rtol=1e-6)
  np.testing.assert_allclose(out.logits, z, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.attention, aux["attention"], rtol=1e-5, atol=1e-6)


def _step_once(config, dataset, edit=None):
  """One main-phase step from a fresh state on 5 samples (classes 0-4).

  ``edit(learner) -> learner`` changes the initial state first. Returns the
  new learner state and the step's metrics.
  """
  exp = trainer.Experiment(config)
  order = (jnp.arange(5, dtype=jnp.int32) * 12).reshape(1, 5)
  data = EpochData(
    jnp.asarray(dataset.train_images),
    jnp.asarray(dataset.train_labels),
    order,
    jnp.ones((1, 5), bool),
    jnp.int32(0),
  )
  state = exp.initial_state()
  if edit is not None:
    state = state.replace(learner=edit(state.learner))
  new, metrics = jax.jit(chunks.make_train_step(exp.method, "main"))(state, data, 0)
  return new.learner, metrics


@pytest.mark.parametrize("name", ["er", "derpp"])
def test_plain_reservoir_methods_store_every_sample(tiny_data, tiny_config, name):
  tiny_config.method = name
  new, metrics = _step_once(tiny_config, tiny_data)
  # Buffer 8 > 5 samples: slots 0-4 hold the batch, whether classified correctly or not.
  np.testing.assert_array_equal(new.buffer.labels[:5], tiny_data.train_labels[::12][:5])
  assert int(new.buffer.num_seen) == 5
  assert np.all(np.isfinite(metrics["loss"]))


def test_baseline_stores_only_correct_samples(tiny_data, tiny_config):
  tiny_config.method = "baseline"

  def predict_class_2(learner):
    # A head bias far above every other logit: the network predicts class 2 for
    # every input, so of the batch's classes 0-4 exactly sample 2 is right.
    head = dict(learner.params["head"], bias=learner.params["head"]["bias"].at[2].add(1e3))
    return learner.replace(params=dict(learner.params, head=head))

  new, metrics = _step_once(tiny_config, tiny_data, predict_class_2)
  images = tiny_data.train_images[::12][:5]
  assert int(new.buffer.num_seen) == 5  # every sample counts; buffer 8 > 5: slot n = sample n
  # The correct sample is written, with its image and pre-update logits ...
  assert int(new.buffer.labels[2]) == 2
  np.testing.assert_array_equal(new.buffer.images[2], images[2])
  assert int(np.argmax(new.buffer.logits[2])) == 2 and float(new.buffer.logits[2, 2]) > 900
  # ... the four wrong ones leave their slots all zero (the reference's fill phase).
  wrong = [0, 1, 3, 4]
  assert np.all(np.asarray(new.buffer.images)[wrong] == 0)
  assert np.all(np.asarray(new.buffer.labels)[wrong] == 0)
  assert np.all(np.asarray(new.buffer.logits)[wrong] == 0)


# dgm needs a one-class benchmark (32x32 images, ten tasks, a step compiled per
# task): tests/dgm/test_dgm.py runs it end to end through the trainer instead.
@pytest.mark.parametrize("name", sorted(set(methods.REGISTRY) - {"dgm"}))
def test_every_method_runs_end_to_end(tiny_data, tiny_config, tmp_path, name):
  tiny_config.method = name
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  matrix = results["class_il"]["matrix"]
  metrics = results["metrics"]["class_il"]
  assert np.isfinite(results["class_il"]["final_average"])
  if methods.REGISTRY[name].joint:
    assert len(matrix) == 2 and None not in matrix[1]  # one pass over all tasks at once
    assert results["train"]["steps"] == 3
    assert metrics["forgetting"] is None and metrics["forward_transfer"] is None
  else:
    assert len(matrix) == 6 and results["train"]["steps"] == 15
    assert all(np.isfinite(v) for v in metrics.values())
  warmup = [e for e in results["log"] if e["phase"] == "warmup"]
  assert bool(warmup) == getattr(methods.REGISTRY[name], "gated", False)
