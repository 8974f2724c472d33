"""The baselines: each loss against a hand computation, buffer filling rules, runs end to end."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import buffer as buffer_lib
from dynamos_jax import methods
from dynamos_jax import runner
from dynamos_jax import train
from dynamos_jax.config import base_config
from dynamos_jax.data.streams import Batch, EpochData
from dynamos_jax.models.resnet import ResNet

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
    return (buffer_lib.Replay(jnp.asarray(x[rows]), jnp.asarray(y[rows]), logits,
                              jnp.zeros((len(rows), 0))), jnp.asarray(real))

  replays = (replay([40, 60, 80, 100], [True, True, True, False]),
             replay([20, 50, 70, 110], [True, True, True, True]))
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
  loss, out = method.loss(variables["params"], variables["batch_stats"], batch,
                          replays[:1], jax.random.key(0))
  (replay, real) = replays[0]
  z, v1 = _forward(model, variables, batch.images, batch.mask)
  zm, v2 = _forward(model, v1, replay.images, real)  # second forward after the first's BN update
  r = np.asarray(real)
  expected = (_np_cross_entropy(z, batch.labels)
              + 0.3 * np.mean((zm[r] - np.asarray(replay.logits)[r]) ** 2)
              + 1.7 * _np_cross_entropy(zm[r], np.asarray(replay.labels)[r]))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, out.batch_stats, v2["batch_stats"])
  np.testing.assert_allclose(out.logits, z, rtol=1e-6)


def test_er_is_cross_entropy_of_the_concatenated_batch(fixed):
  model, variables, batch, replays = fixed
  method = methods.REGISTRY["er"](model=model, lr=0.1)
  loss, out = method.loss(variables["params"], variables["batch_stats"], batch,
                          replays[:1], jax.random.key(0))
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
  loss, out = method.loss(variables["params"], variables["batch_stats"], batch, replays,
                          jax.random.key(0))
  (m1, real1), (m2, real2) = replays
  z, v = _forward(model, variables, batch.images, batch.mask)
  z1, v = _forward(model, v, m1.images, real1)
  z2, v = _forward(model, v, m2.images, real2)
  r1 = np.asarray(real1)
  expected = (_np_cross_entropy(z, batch.labels)
              + 0.4 * np.mean((z1[r1] - np.asarray(m1.logits)[r1]) ** 2)
              + 0.9 * _np_cross_entropy(z2, m2.labels))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, out.batch_stats, v["batch_stats"])


def test_dynamos_nobuffer_has_no_replay_terms(tiny_data, tiny_config):
  method = methods.REGISTRY["dynamos_nobuffer"].from_config(tiny_config, TEN_CLASSES)
  assert method.gated and method.reservoir is None
  model = method.model
  variables = model.init({"params": jax.random.key(0), "gates": jax.random.key(1)},
                         jnp.zeros((2, 8, 8, 3), jnp.uint8), "sample", True)
  x, y = tiny_data.train_images, tiny_data.train_labels
  batch = Batch(jnp.asarray(x[::12][:10]), jnp.asarray(y[::12][:10]), jnp.ones(10, bool))
  loss, out = method.loss(variables["params"], variables["batch_stats"], batch, (),
                          jax.random.key(2))
  m = out.metrics
  assert not any(k.startswith(("replay", "mse")) for k in m)
  np.testing.assert_allclose(
      loss, m["ce"] + tiny_config.dynamos.gamma * m["reinforce"]
      + tiny_config.dynamos.w_p * m["prototype"],
      rtol=1e-6)


def _step_once(config, dataset):
  """One main-phase step from a fresh state on 5 samples; returns the new buffer."""
  exp = train.Experiment(config)
  order = (jnp.arange(5, dtype=jnp.int32) * 12).reshape(1, 5)
  data = EpochData(jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels),
                   order, jnp.ones((1, 5), bool), jnp.int32(0))
  new, metrics = jax.jit(runner.make_train_step(exp.method, "main"))(exp.initial_state(), data, 0)
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
  new, metrics = _step_once(tiny_config, tiny_data)
  # An untrained network on 10 classes gets few right: the rest leave zero slots (label 0).
  stored = np.asarray(new.buffer.labels[:5])
  truth = tiny_data.train_labels[::12][:5]
  assert np.all((stored == truth) | (stored == 0))
  assert int(new.buffer.num_seen) == 5


# dgm needs a one-class benchmark (32x32 images, ten tasks, a step compiled per
# task): tests/test_dgm.py runs it end to end through the trainer instead.
@pytest.mark.parametrize("name", sorted(set(methods.REGISTRY) - {"dgm"}))
def test_every_method_runs_end_to_end(tiny_data, tiny_config, tmp_path, name):
  tiny_config.method = name
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  results = train.train_and_evaluate(tiny_config, str(tmp_path))
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
