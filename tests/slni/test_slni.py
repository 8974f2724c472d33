"""SLNI on permuted MNIST: the step's loss, importance after each task, the family, bad input."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import chunks, losses, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.slni import importance
from dynamos_jax.methods.slni import regularizers as reg

from conftest import ROOT


@pytest.fixture
def slni(tiny_data, tiny_config):
  c = tiny_config
  c.method, c.dataset = "slni", "permuted-mnist"
  c.lr, c.epochs, c.batch_size = 0.05, 1, 8
  c.slni.width = 16
  c.slni.lambda_ssl = 0.01
  c.train.max_steps_per_task = 4
  return c


def test_step_loss_is_ce_plus_weighted_terms(slni):
  slni.slni.discount = "min"
  exp = trainer.Experiment(slni)
  state = exp.initial_state()
  # A consolidated state: nonzero Omega, alpha and an anchor away from the weights.
  learner = state.learner
  omega = jax.tree.map(lambda p: jnp.full_like(p, 0.5), learner.params)
  alpha = tuple(jnp.linspace(0.0, 2.0, 16) for _ in range(2))
  anchor = jax.tree.map(lambda p: p + 0.01, learner.params)
  learner = learner.replace(
    consolidation=importance.Consolidation(omega, anchor, alpha, jnp.int32(1))
  )
  state = state.replace(learner=learner)
  data = exp.benchmark.epoch_data(1, 0)
  _, metrics = jax.jit(chunks.make_train_step(exp.method, "main"))(state, data, 0)

  batch = data.batch(0)
  logits, aux = exp.method.model.apply({"params": learner.params}, batch.images)
  ce = losses.cross_entropy(logits, batch.labels, batch.mask)
  g = reg.locality(16, 16 / 6)
  rep = sum(
    reg.decorrelation(h, batch.mask, g * reg.discount(a, "min")) for h, a in zip(aux["act"], alpha)
  )
  size = sum(p.size for p in jax.tree.leaves(learner.params))
  pen = 0.5 * 1e-4 * size
  np.testing.assert_allclose(metrics["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(metrics["representation"], rep, rtol=1e-5)
  np.testing.assert_allclose(metrics["anchor"], pen, rtol=1e-4)
  np.testing.assert_allclose(metrics["loss"], ce + 0.01 * rep + 0.1 * pen, rtol=1e-5)


@pytest.mark.parametrize(
  "regularizer, activation, kind",
  [
    ("slnid", "relu", "mas"),
    ("snid", "relu", "ewc"),
    ("decov", "relu", "none"),
    ("l1_param", "lwta", "mas"),
    ("orthreg", "maxout", "none"),
    ("no_reg", "maxout", "mas"),
  ],
)
def test_the_family_trains_and_consolidates(slni, tmp_path, regularizer, activation, kind):
  slni.slni.update(
    regularizer=regularizer, activation=activation, importance=kind, weight_decay=1e-3
  )
  config_lib.validate(slni)
  results = trainer.train_and_evaluate(slni, str(tmp_path))
  log = results["log"]
  assert len(results["class_il"]["matrix"]) == 6 and all(np.isfinite(e["loss"]) for e in log)
  first = [e["anchor"] for e in log if e["task"] == 1]
  later = [e["anchor"] for e in log if e["task"] > 1]
  assert first == [0.0] * len(first)  # No Omega before the first task ends.
  assert (min(later) > 0) == (kind != "none")
  rep = [e["representation"] for e in log]
  assert (max(rep) > 0) == (regularizer in ("slnid", "snid", "decov"))


def test_importance_is_estimated_on_the_finished_tasks_data(slni, tmp_path):
  exp = trainer.Experiment(slni)
  state = exp.initial_state().learner
  ended = exp.method.end_task(state, exp.benchmark.task_data(0))
  c = ended.consolidation
  assert int(c.tasks) == 1 and all(float(jnp.sum(a)) > 0 for a in c.alpha)
  jax.tree.map(np.testing.assert_array_equal, c.anchor, state.params)
  assert all(float(jnp.sum(o)) > 0 for o in jax.tree.leaves(c.omega))
  # A fresh optimiser at each task: the momentum does not carry over.
  moved = state.replace(opt_state=jax.tree.map(lambda x: x + 1.0, state.opt_state))
  begun = exp.method.begin_task(moved, exp.benchmark.task_data(1))
  jax.tree.map(np.testing.assert_array_equal, begun.opt_state, state.opt_state)


@pytest.mark.parametrize(
  "change, message",
  [
    ({"regularizer": "dropout"}, "unknown slni.regularizer"),
    ({"activation": "maxout", "width": 18}, "does not split into maxout blocks"),
    ({"lambda_omega": -1.0}, "lambda_omega must be >= 0"),
    ({"sigma_scale": 0.0}, "needs sigma > 0"),
    ({"heads": "per_task"}, "needs a task-incremental benchmark"),
  ],
)
def test_bad_input_is_refused(slni, change, message):
  slni.slni.update(change)
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(slni)


@pytest.mark.parametrize("arg", ["mas128", "mas64", "ewc128", "ewc64"])
def test_demo_configs(arg):
  import importlib.util
  import os

  root = ROOT
  spec = importlib.util.spec_from_file_location(
    "pm", os.path.join(root, "configs", "permuted_mnist.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(arg)
  config_lib.validate(c)
  assert (c.slni.importance, c.slni.width) == (arg[:3], int(arg[3:]))
  assert (c.lr, c.batch_size, c.epochs) == (0.01, 200, 10)
  with pytest.raises(ValueError, match="use mas128"):
    module.get_config("si128")


def test_representation_statistics():
  from dynamos_jax.methods.slni import representation as rep

  acts = np.array([[1.0, 0.0, 0.0], [2.0, 3.0, 0.0]])
  assert rep.active_per_example(acts) == 0.5
  np.testing.assert_array_equal(rep.unit_rates(acts), [1.0, 0.5, 0.0])
  np.testing.assert_array_equal(rep.ever_active(acts), [True, True, False])
  sets = [np.array([True, True, False]), np.array([False, True, True]), np.zeros(3, bool)]
  np.testing.assert_allclose(rep.overlap(sets), [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])
  np.testing.assert_allclose(rep.correlation(acts), [[2.5, 3.0, 0], [3.0, 4.5, 0], [0, 0, 0]])


def test_analyze_shows_the_hidden_layers(slni, tmp_path):
  import json
  import os

  from dynamos_jax import analyze

  trainer.train_and_evaluate(slni, str(tmp_path))
  numbers = analyze.analyze(str(tmp_path))
  pngs = set(os.listdir(tmp_path / "analysis"))
  assert {
    "task_accuracy_bars.png",
    "layer1_overlap.png",
    "layer2_correlation.png",
    "layer1_unit_rates.png",
  } <= pngs
  layers = numbers["hidden_layers"]
  assert [len(l["active_per_example"]) for l in layers] == [5, 5]
  assert np.array(layers[0]["unit_rates"]).shape == (5, 16)
  assert json.loads((tmp_path / "analysis" / "analysis.json").read_text())["hidden_layers"]


def test_best_test_epoch_selection_keeps_the_best_epochs_weights(slni, tmp_path, monkeypatch):
  """The authors' rule, the former ``best_epoch``: the best epoch on the task's test set."""
  slni.slni.selection = "best_test_epoch"
  slni.epochs, slni.train.max_steps_per_task = 3, 0
  exp = trainer.Experiment(slni)
  state = exp.method.begin_task(exp.initial_state().learner, exp.benchmark.task_data(0))
  keep = exp.method.end_epoch
  first = keep(state, None, 50.0)
  moved = first.replace(params=jax.tree.map(lambda p: p + 1.0, first.params))
  second = keep(moved, None, 40.0)  # Worse: the first epoch's weights stay the best.
  assert float(second.best_accuracy) == 50.0
  jax.tree.map(np.testing.assert_array_equal, second.best, state.params)
  third = keep(second, None, 60.0)
  jax.tree.map(np.testing.assert_array_equal, third.best, moved.params)
  ended = exp.method.end_task(second, exp.benchmark.task_data(0))
  jax.tree.map(np.testing.assert_array_equal, ended.params, state.params)
  assert float(exp.method.begin_task(ended, exp.benchmark.task_data(1)).best_accuracy) == -1.0
  # In a run, the trainer calls it after each of a task's epochs with the task's accuracy.
  calls = []
  original = type(exp.method).end_epoch

  def spying(self, s, task, acc):
    calls.append((task.index, acc))
    return original(self, s, task, acc)

  monkeypatch.setattr(type(exp.method), "end_epoch", spying)
  results = trainer.train_and_evaluate(slni, str(tmp_path))
  assert [t for t, _ in calls] == [t for t in range(5) for _ in range(3)]
  assert all(0.0 <= a <= 100.0 for _, a in calls)
  # The row after task 1 evaluates the kept weights: the best epoch's accuracy.
  assert results["class_il"]["matrix"][1][0] == max(a for t, a in calls if t == 0)
  # Saved before the validation split, as the old name and without data.validation, the
  # run reads back as what it ran (the rewrite: test_old_best_epoch_is_best_test_epoch).
  saved = glob.glob(str(tmp_path / "checkpoints" / "*" / "progress" / "metadata"))
  assert saved  # Orbax's JSON of the progress record.
  for name in saved:
    with open(name) as f:
      progress = json.load(f)
    progress["config"]["slni"]["selection"] = "best_epoch"
    del progress["config"]["data"]["validation"]
    with open(name, "w") as f:
      json.dump(progress, f)
  exp, _, progress = trainer.restore_run(str(tmp_path))
  assert progress["config"]["slni"]["selection"] == "best_epoch"  # as saved
  assert (exp.method.selection, exp.method.epoch_split) == ("best_test_epoch", "test")


def _scripted_run(slni, tmp_path, monkeypatch, selection):
  """One task of three epochs in which the test set's best epoch is the first and the
  validation split's the third (scripted scores); the splits the run evaluated, in order,
  each epoch's weights and the weights the task ended with."""
  from dynamos_jax import benchmarks

  slni.slni.selection, slni.data.validation = selection, 0.25
  slni.epochs, slni.train.max_steps_per_task, slni.train.max_tasks = 3, 0, 1
  method = type(trainer.Experiment(slni).method)
  script = {"test": [90.0, 10.0, 20.0, 50.0], "valid": [10.0, 20.0, 90.0, 50.0]}
  splits, epochs, ended = [], [], []

  def scripted(self, predict, batch_size, split="test"):
    splits.append(split)
    value = script[split][min(len(epochs), 3)]  # before epoch e's hook: e epochs recorded
    return {"class_il": [value] * self.num_tasks, "task_il": [value] * self.num_tasks}

  def end_epoch(self, state, task, accuracy):
    epochs.append((accuracy, jax.device_get(state.params)))
    return keep_epoch(self, state, task, accuracy)

  def end_task(self, state, task):
    state = keep_task(self, state, task)
    ended.append(jax.device_get(state.params))
    return state

  keep_epoch, keep_task = method.end_epoch, method.end_task
  monkeypatch.setattr(benchmarks.REGISTRY["permuted-mnist"], "evaluate", scripted)
  monkeypatch.setattr(method, "end_epoch", end_epoch)
  monkeypatch.setattr(method, "end_task", end_task)
  trainer.train_and_evaluate(slni, str(tmp_path))
  return splits, epochs, ended[0]


@pytest.mark.parametrize(
  "selection, split, best", [("best_epoch", "valid", 2), ("best_test_epoch", "test", 0)]
)
def test_best_epoch_selects_on_the_validation_split(
  slni, tmp_path, monkeypatch, selection, split, best
):
  """Where the two splits' best epochs differ, ``best_epoch`` keeps the validation split's
  and ``best_test_epoch`` the test set's, with a split held out in both."""
  splits, epochs, ended = _scripted_run(slni, tmp_path, monkeypatch, selection)
  # The untrained rows, one evaluation per epoch on the rule's split, the rows after the task.
  assert splits == ["test", "valid", split, split, split, "test", "valid"]
  assert [a for a, _ in epochs] == ([90.0, 10.0, 20.0] if split == "test" else [10.0, 20.0, 90.0])
  for e, (_, params) in enumerate(epochs):  # The epochs' weights differ: the choice shows.
    same = jax.tree.leaves(jax.tree.map(np.array_equal, params, ended))
    assert all(same) == (e == best)


def test_best_epoch_reads_the_tasks_validation_accuracy(slni, tmp_path, monkeypatch):
  """Unscripted, the hook gets the task's accuracy on the validation split, as the
  validation row after the task scores the kept weights."""
  slni.slni.selection, slni.data.validation = "best_epoch", 0.25
  slni.epochs, slni.train.max_steps_per_task, slni.train.max_tasks = 3, 0, 1
  calls, original = [], type(trainer.Experiment(slni).method).end_epoch

  def spying(self, s, task, acc):
    calls.append(acc)
    return original(self, s, task, acc)

  monkeypatch.setattr(type(trainer.Experiment(slni).method), "end_epoch", spying)
  results = trainer.train_and_evaluate(slni, str(tmp_path))
  assert len(calls) == 3
  assert results["validation"]["class_il"]["matrix"][1][0] == max(calls)


def test_best_epoch_without_a_validation_split_is_one_line(slni):
  slni.slni.selection = "best_epoch"
  with pytest.raises(ConfigError) as e:
    config_lib.validate(slni)
  message = str(e.value)
  assert "\n" not in message
  assert "--config.data.validation=0.1" in message and "best_test_epoch" in message


def test_old_best_epoch_is_best_test_epoch():
  """A config saved before ``best_epoch`` moved to the validation split (no split: none
  could exist, or 0) reads as ``best_test_epoch``; one with a split is today's rule."""
  from dynamos_jax.checkpoint import config_differences

  current = config_lib.base_config()
  current.slni.selection = "best_test_epoch"
  old = config_lib.base_config().to_dict()
  old["slni"]["selection"] = "best_epoch"
  del old["data"]["validation"]
  assert config_lib.migrate(old)["slni"]["selection"] == "best_test_epoch"
  assert config_differences(old, current.to_dict()) == []  # it resumes under the new name
  old["data"]["validation"] = 0.0
  assert config_lib.migrate(old)["slni"]["selection"] == "best_test_epoch"
  old["data"]["validation"] = 0.1
  assert config_lib.migrate(old)["slni"]["selection"] == "best_epoch"
  for kept in ("last", "best_test_epoch"):
    old["slni"]["selection"] = kept
    assert config_lib.migrate(old)["slni"]["selection"] == kept


def test_last_epoch_selection_asks_for_no_evaluation(slni):
  assert trainer.Experiment(slni).method.epoch_end == "none"  # selection=last: no hook


def test_maxout_alpha_is_the_importance_of_each_maxout_unit(slni):
  """alpha of a Maxout layer: per output unit h, the mean over samples of |dJ/dh| (MAS's J)."""
  slni.slni.update(activation="maxout", importance="mas")
  exp = trainer.Experiment(slni)
  learner = exp.initial_state().learner
  task = exp.benchmark.task_data(0)
  alpha = exp.method.end_task(learner, task).consolidation.alpha
  model = exp.method.model
  assert [a.shape for a in alpha] == [(8,), (4,)]  # width 16: 16 / 2, then 8 / 2
  # Independently: probes on the Maxout outputs (h = maxout(z)), gradient of MAS's
  # squared logit norm per batch, |.| per sample, summed.
  want = [np.zeros(8), np.zeros(4)]
  data = task.batches(exp.method.importance_batch)
  for i in range(data.order.shape[0]):
    batch = data.batch(i)
    _, aux = model.apply({"params": learner.params}, batch.images)
    probes = tuple(jnp.zeros_like(h) for h in aux["act"])

    def objective(probes):
      x = batch.images.reshape(batch.images.shape[0], -1).astype(jnp.float32) / 255.0
      params = learner.params
      hs = []
      for layer, name in enumerate(("fc1", "fc2")):
        z = x @ params[name]["kernel"] + params[name]["bias"]
        x = z.reshape(z.shape[0], -1, 2).max(-1) + probes[layer]
        hs.append(x)
      logits = x @ params["head"]["kernel"] + params["head"]["bias"]
      return jnp.sum(jnp.sum(logits**2, -1) * batch.mask)  # summed over the batch

    grads = jax.grad(objective)(probes)
    for layer in range(2):
      want[layer] += np.sum(np.abs(np.asarray(grads[layer])) * np.asarray(batch.mask)[:, None], 0)
  samples = float(np.sum(np.asarray(data.mask)))
  for got, w in zip(alpha, want):
    np.testing.assert_allclose(np.asarray(got), w / samples, rtol=1e-4, atol=1e-7)


def test_after_task_reports_are_each_tasks_state_on_the_seen_tasks(slni, tmp_path, monkeypatch):
  """The trainer keeps SLNI's report after every task, computed from that task's weights on
  the test images of the tasks seen so far (recomputed here in NumPy), and analyze draws them."""
  from dynamos_jax import analyze, task_arrays
  from dynamos_jax.methods.slni.slni import SLNI

  seen_params = []
  original = SLNI.after_task

  def spying(self, state, task, benchmark):
    seen_params.append((task.index, jax.device_get(state.params)))
    return original(self, state, task, benchmark)

  monkeypatch.setattr(SLNI, "after_task", spying)
  trainer.train_and_evaluate(slni, str(tmp_path))
  reports = task_arrays.load(str(tmp_path), slni.seed)
  assert [t for t, _ in seen_params] == list(range(5)) and len(reports) == 5
  exp = trainer.Experiment(slni)
  for (t, params), report in zip(seen_params, reports):
    for s in range(t + 1):
      images = np.asarray(exp.benchmark.task_test_set(s)[0], np.float64)
      images = images.reshape(len(images), -1) / 255
      p = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in params.items()}
      h1 = np.maximum(images @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
      h2 = np.maximum(h1 @ p["fc2"]["kernel"] + p["fc2"]["bias"], 0)
      for n, h in ((1, h1), (2, h2)):
        assert report[f"l{n}_active_per_example"].shape == (t + 1,)
        np.testing.assert_allclose(report[f"l{n}_active_per_example"][s], np.mean(h > 0), atol=2e-3)
        # float32 there, float64 here: a unit at the edge (|h| < 1e-5) may differ.
        edge = np.any(np.abs(h) < 1e-5, 0) & ~np.any(h > 1e-5, 0)
        np.testing.assert_array_equal(
          report[f"l{n}_ever_active"][s][~edge], np.any(h > 0, 0)[~edge]
        )
    if t:  # alpha accumulates from the first task's end on (SLNID + MAS).
      assert np.all(report["l1_alpha"] >= 0) and report["l1_alpha"].sum() > 0
  # Different weights after each task: the reports are not the final state's five times.
  assert not np.array_equal(reports[1]["l1_unit_rates"][0], reports[4]["l1_unit_rates"][0])
  numbers = analyze.analyze(str(tmp_path))
  assert [len(v) for v in numbers["hidden_layers_by_task"][0]["active_per_example"]] == [
    1,
    2,
    3,
    4,
    5,
  ]
  assert (tmp_path / "analysis" / "layer2_overlap_by_task.png").exists()


def test_task_reports_of_unfinished_tasks_are_dropped(tmp_path):
  from dynamos_jax import task_arrays

  folder = task_arrays.directory(str(tmp_path), 3)
  os.makedirs(folder)
  for t in (1, 2, 3, 5):
    np.savez(os.path.join(folder, f"task_{t}.npz"), x=np.full(2, t))
  assert [int(r["x"][0]) for r in task_arrays.load(str(tmp_path), 3)] == [1, 2, 3]  # gap at 4
  task_arrays.keep_finished(str(tmp_path), [3], 2)
  assert sorted(os.listdir(folder)) == ["task_1.npz", "task_2.npz"]


def test_plateau_decays_the_lr_and_stops_the_task(slni):
  """lr_patience / stop_patience (the Tiny ImageNet trainer): x lr_factor after every
  lr_patience epochs without a gain, stopped after more than stop_patience; a stopped
  task's steps change nothing and a decayed step is the scaled step."""
  slni.slni.update(lr_patience=2, lr_factor=0.1, stop_patience=3)
  exp = trainer.Experiment(slni)
  method = exp.method
  state = method.begin_task(exp.initial_state().learner, exp.benchmark.task_data(0))
  history = []
  for accuracy in (50.0, 60.0, 55.0, 60.0, 59.0, 58.0, 70.0):
    state = method.end_epoch(state, None, accuracy)
    history.append((int(state.since_best), round(float(state.lr_scale), 6), bool(state.stopped)))
  assert history[:6] == [
    (0, 1.0, False),
    (0, 1.0, False),
    (1, 1.0, False),
    (2, 0.1, False),
    (3, 0.1, False),
    (4, 0.01, True),
  ]
  assert history[6] == history[5]  # A stopped task ignores later epochs.
  data = exp.benchmark.epoch_data(0, 0)
  step = jax.jit(lambda s: method.step(s, data.batch(0), jax.random.key(0), "main")[0])
  stopped = step(state)
  jax.tree.map(np.testing.assert_array_equal, stopped.params, state.params)
  jax.tree.map(np.testing.assert_array_equal, stopped.opt_state, state.opt_state)
  fresh = method.begin_task(state, exp.benchmark.task_data(0))
  assert float(fresh.lr_scale) == 1.0 and not bool(fresh.stopped)
  full, half = step(fresh), step(fresh.replace(lr_scale=jnp.float32(0.5)))
  jax.tree.map(
    lambda p, f, h: np.testing.assert_allclose(h - p, 0.5 * (f - p), rtol=1e-4, atol=1e-7),
    fresh.params,
    full.params,
    half.params,
  )


def test_a_stopped_task_keeps_its_weights_in_a_run(slni, tmp_path, monkeypatch):
  slni.slni.update(stop_patience=1)
  slni.epochs, slni.train.max_steps_per_task = 5, 0
  from dynamos_jax.methods.slni.slni import SLNI

  params = []
  original = SLNI.end_epoch

  def constant(self, state, task, accuracy):  # The same accuracy every epoch: no gain.
    params.append((task.index, jax.device_get(state.params)))
    return original(self, state, task, 50.0)

  monkeypatch.setattr(SLNI, "end_epoch", constant)
  trainer.train_and_evaluate(slni, str(tmp_path))
  first = [p for t, p in params if t == 0]
  assert len(first) == 5  # the epochs still run: the plan is fixed
  # Epoch 1 improves, 2 and 3 do not: stopped after epoch 3, so 4 and 5 change nothing.
  leaves = lambda p: jax.tree.leaves(p)  # noqa: E731
  assert any(not np.array_equal(a, b) for a, b in zip(leaves(first[1]), leaves(first[2])))
  for later in first[3:]:
    jax.tree.map(np.testing.assert_array_equal, later, first[2])
