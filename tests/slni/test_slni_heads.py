"""SLNI with a head per task on VGG11-slim: the step, predictions and importance use the
task's head, old heads stay fixed; end-to-end runs on split CIFAR-100 and Tiny ImageNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import chunks, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.data import sources
from dynamos_jax.errors import ConfigError

from conftest import ROOT
from image_data import make_tiny_imagenet

K = 10  # classes per task of split CIFAR-100


def _cifar_like(per_class=2, side=8):
  """100 classes of random images; image of class c carries c in pixel (0, 0, 0)."""
  rng = np.random.default_rng(0)

  def split(n):
    labels = np.repeat(np.arange(100, dtype=np.int32), n)
    images = rng.integers(0, 256, (len(labels), side, side, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels
    return images, labels

  return sources.ArrayDataset("cifar100", *split(per_class), *split(1), 100)


def _config(tiny_config):
  c = tiny_config
  c.method, c.dataset = "slni", "split-cifar100"
  c.lr, c.epochs, c.batch_size = 0.01, 1, 8
  c.slni.update(
    model="vgg11_slim", channels=4, width=16, heads="per_task", lambda_ssl=0.01, importance_batch=8
  )
  c.train.max_steps_per_task = 2
  c.train.chunk_size = 2
  return c


@pytest.fixture
def heads(tiny_config, monkeypatch):
  dataset = _cifar_like()
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: dataset)
  return _config(tiny_config)


def test_the_step_trains_only_the_batchs_head(heads):
  heads.slni.update(regularizer="l2_wd", weight_decay=0.5)  # Decay would reach every head.
  config_lib.validate(heads)
  exp = trainer.Experiment(heads)
  state = exp.initial_state()
  data = exp.benchmark.epoch_data(3, 0)
  new, metrics = jax.jit(chunks.make_train_step(exp.method, "main"))(state, data, 0)
  before, after = state.learner.params, new.learner.params
  own = np.zeros(10 * K, bool)
  own[3 * K : 4 * K] = True
  for name in ("kernel", "bias"):
    b, a = np.asarray(before["head"][name]), np.asarray(after["head"][name])
    np.testing.assert_array_equal(a[..., ~own], b[..., ~own])  # Other heads exactly fixed.
    assert np.abs(a[..., own] - b[..., own]).min() > 0  # Task 3's head moved, all of it.
  assert not np.array_equal(after["fc1"]["kernel"], before["fc1"]["kernel"])
  # The CE is that of task 3's head on the labels within the task.
  batch = data.batch(0)
  logits, _ = exp.method.model.apply({"params": before}, batch.images)
  z = np.asarray(logits)[:, own]
  log_p = (
    z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
  )
  labels = np.asarray(batch.labels)
  assert labels.max() < K
  np.testing.assert_allclose(
    metrics["ce"], -log_p[np.arange(len(labels)), labels].mean(), rtol=1e-5
  )


def test_predictions_and_importance_use_the_tasks_head(heads):
  exp = trainer.Experiment(heads)
  learner = exp.initial_state().learner
  images, _ = exp.benchmark.task_test_set(4)
  every = np.asarray(exp.method.predict(learner, images, None, "main"))
  assert every.shape == (10, 10 * K)
  for t in (0, 4, 9):
    np.testing.assert_array_equal(
      exp.method.predict(learner, images, jnp.int32(t), "main"), every[:, t * K : (t + 1) * K]
    )
  ended = exp.method.end_task(learner, exp.benchmark.task_data(2))
  kernel, bias = (np.asarray(ended.consolidation.omega["head"][n]) for n in ("kernel", "bias"))
  assert (bias[2 * K : 3 * K] > 0).all() and (kernel[:, 2 * K : 3 * K].sum(0) > 0).all()
  assert (np.delete(bias, np.s_[2 * K : 3 * K]) == 0).all()
  assert (np.delete(kernel, np.s_[2 * K : 3 * K], 1) == 0).all()


def test_per_task_heads_are_for_task_incremental_benchmarks(heads):
  config_lib.validate(heads)
  heads.dataset = "permuted-mnist"
  with pytest.raises(ConfigError, match="needs a task-incremental benchmark") as info:
    config_lib.validate(heads)
  assert "\n" not in str(info.value)
  heads.dataset, heads.slni.model = "split-cifar100", "resnet"
  with pytest.raises(ConfigError, match="unknown slni.model"):
    config_lib.validate(heads)


def _check_results(results, tasks=10):
  for protocol in ("class_il", "task_il"):
    matrix = results[protocol]["matrix"]
    assert len(matrix) == tasks + 1 and None not in matrix[-1]
    assert all(0.0 <= v <= 100.0 for v in matrix[-1])
  assert all(np.isfinite(e["loss"]) for e in results["log"])


# Whole runs through two loaders: the slow tier; the loaders' own tests are in tests/data/.
@pytest.mark.slow
def test_slni_on_mock_tfds_split_cifar100(tiny_config, tmp_path):
  import tensorflow_datasets as tfds

  c = _config(tiny_config)
  c.data.source, c.data.tfds_data_dir = "tfds", str(tmp_path / "tfds")
  config_lib.validate(c)
  with tfds.testing.mock_data(num_examples=200):  # Random labels: about 20 a task.
    results = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  _check_results(results)
  anchors = [(e["task"], e["anchor"]) for e in results["log"]]
  assert all(a == 0.0 for t, a in anchors if t == 1) and all(a > 0 for t, a in anchors if t > 1)


@pytest.mark.slow
def test_slni_on_a_generated_tiny_imagenet_folder(tiny_config, tmp_path):
  make_tiny_imagenet(str(tmp_path / "tiny-imagenet-200"), classes=200, train=1, val=1)
  c = _config(tiny_config)
  c.dataset, c.data.source, c.data.path = "tiny-imagenet", "files", str(tmp_path)
  # No importance pass here (the CIFAR run has one): the crops and heads are what is new.
  c.slni.update(importance="none", regularizer="slni")
  c.train.max_steps_per_task = 1
  config_lib.validate(c)
  results = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  _check_results(results)
  assert results["config"]["dataset"] == "tiny-imagenet"
  # analyze draws VGG11-slim's two regularised Dense layers, finally and after each task.
  from dynamos_jax import analyze

  numbers = analyze.analyze(str(tmp_path / "run"))
  assert [len(layer["unit_rates"][0]) for layer in numbers["hidden_layers"]] == [16, 16]
  assert [len(v) for v in numbers["hidden_layers_by_task"][1]["ever_active"]] == list(range(1, 11))


def _load_config(name, arg=None):
  import importlib.util
  import os

  root = ROOT
  spec = importlib.util.spec_from_file_location(name, os.path.join(root, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize(
  "name, dataset, side",
  [("tiny_imagenet", "tiny-imagenet", 56), ("split_cifar100", "split-cifar100", 32)],
)
def test_configs(name, dataset, side):
  from dynamos_jax import benchmarks, methods

  c = _load_config(name)
  c.data.path = "/data"
  config_lib.validate(c)
  assert c.dataset == dataset and (c.lr, c.batch_size, c.slni.momentum) == (0.01, 200, 0.9)
  s = c.slni
  assert (
    s.model,
    s.width,
    s.heads,
    s.importance,
    s.lambda_ssl,
    s.lambda_omega,
    s.sigma_scale,
    s.alpha_mean,
    s.selection,
  ) == ("vgg11_slim", 500, "per_task", "mas", 1e-6, 4.0, 6.0, True, "best_test_epoch")
  assert _load_config(name, "no_reg").slni.regularizer == "no_reg"
  if name == "tiny_imagenet":  # the demo's plateau schedule (docs/slni.md#presets)
    assert (s.lr_patience, s.lr_factor, s.stop_patience) == (5, 0.1, 10)

  class Shapes:  # What from_config reads of the benchmark.
    num_tasks = 10
    num_classes = benchmarks.REGISTRY[dataset].classes_per_task

  model = methods.REGISTRY["slni"].from_config(c, Shapes).model
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.uint8))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  if name == "tiny_imagenet":  # docs/slni.md#networks: one head, plus nine Dense(500, 20).
    assert count == 17_305_884 + 9 * (500 * 20 + 20)


def test_permuted_mnist_width_sweep():
  for width in (8, 16, 32, 64, 128, 256, 512):
    c = _load_config("permuted_mnist", f"ewc{width}")
    config_lib.validate(c)
    assert (c.slni.width, c.slni.importance, c.slni.lambda_omega) == (width, "ewc", 10.0)
  with pytest.raises(ValueError, match="use mas128"):
    _load_config("permuted_mnist", "mas100")
