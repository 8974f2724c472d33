"""The method lifecycle with a method that is not a loss: tests/toy_method.py.

Its hooks run at the task boundaries, its state crosses tasks, checkpoints
and resumes mid-task exactly, and a hook that grows a parameter between
tasks makes the trainer recompile once per shape and resume at the saved
task's shapes, one seed or several.
"""

import json
import os

import numpy as np
import pytest

from dynamos_jax import analyze, methods, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.benchmarks import KINDS
from dynamos_jax.benchmarks import register as register_benchmark
from dynamos_jax.benchmarks.class_split import ClassSplit
from dynamos_jax.checkpoint import Checkpointer
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods import Method

from conftest import Crash, crash_in_chunk
import toy_method  # Registers --config.method=anchored (conftest imported it first).


@pytest.fixture
def toy(tiny_data, tiny_config):
  tiny_config.method = "anchored"
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 4
  tiny_config.train.chunk_size = 2  # Two chunks a task: a checkpoint can fall mid-task.
  tiny_config.checkpoint.every_steps = 1
  tiny_config.checkpoint.keep = 50
  return tiny_config


def _comparable(results):
  return {k: v for k, v in results.items() if k != "train"} | {"steps": results["train"]["steps"]}


def _final_state(workdir):
  """The newest checkpoint's step and state fingerprint."""
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), keep=50)
  step = checkpoints.steps()[-1]
  with open(os.path.join(workdir, "checkpoints", str(step), "progress", "metadata")) as f:
    progress = json.load(f)
  return step, progress["fingerprint"], progress["layout"]


def test_hooks_run_at_task_boundaries_and_state_crosses_tasks(toy, tmp_path, monkeypatch):
  calls = []
  for hook in ("begin_task", "end_task"):
    original = getattr(toy_method.Anchored, hook)

    def spy(self, state, task, original=original, hook=hook):
      calls.append((hook, task.index, int(state.steps), int(state.tasks_done)))
      # The hook sees the task's training samples, e.g. for a pass over them.
      data = task.batches(7)
      seen = np.asarray(data.labels)[np.asarray(data.order)[np.asarray(data.mask)]]
      assert len(seen) == task.size == 24 and set(seen) == set(task.classes)
      return original(self, state, task)

    monkeypatch.setattr(toy_method.Anchored, hook, spy)
  results = trainer.train_and_evaluate(toy, str(tmp_path))
  # begin before the task's first step, end after its last one, in task order.
  expected = []
  for t in range(5):
    expected += [("begin_task", t, 4 * t, t), ("end_task", t, 4 * t + 4, t)]
  assert calls == expected
  log = results["log"]
  assert all(e["task_matches"] == 1.0 for e in log)  # each batch carries its task id
  first = [e for e in log if e["task"] == 1]
  later = [e for e in log if e["task"] > 1]
  # The anchor pulls only once a task has ended: state carried across tasks.
  assert all(e["loss"] == e["ce"] for e in first)
  assert all(e["loss"] > e["ce"] for e in later)
  assert len(results["class_il"]["matrix"]) == 6 and results["train"]["steps"] == 20
  # analyze draws every run's figures and adds the method's own numbers (its hook).
  numbers = analyze.analyze(str(tmp_path))
  assert numbers["anchor_drift"] >= 0.0 and numbers["hidden_units"] == 0
  written = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
  assert written["anchor_drift"] == numbers["anchor_drift"] and written["method"] == "anchored"
  assert (tmp_path / "analysis" / "class_il_matrix.png").exists()


class Minimal(Method):
  """Only the required members: every optional hook keeps the base's default."""

  name = "minimal-test-only"  # never registered

  @classmethod
  def from_config(cls, config, benchmark):
    return cls()

  def init(self, key, example, benchmark):
    return {"w": 0.0}

  def step(self, state, batch, key, phase):
    return state, {}

  def predict(self, state, images, task, phase):
    return images


def test_every_optional_hook_defaults_to_doing_nothing():
  m, state = Minimal(), {"w": 1.0}
  assert m.phases(0, 10) == (("main", None),) and m.epoch_end == "none"
  for hook in ("begin_task", "end_task"):
    assert getattr(m, hook)(state, None) is state
  assert m.end_epoch(state, None, 50.0) is state
  assert m.after_task(state, None, None) == {} and m.results(state, None) is None
  assert m.common_shape([state, state]) == [state, state]
  assert m.analyze(state, None) == {} and m.training_marks() == {}
  assert m.kinds == KINDS


def test_analyze_names_no_method():
  """A method's analyses are its own hook: the command has no branch per method."""
  source = open(analyze.__file__).read()
  for name in methods.REGISTRY:
    assert f'"{name}"' not in source and f"'{name}'" not in source, name


def test_a_method_on_a_benchmark_kind_it_does_not_support_is_refused(tiny_config):
  tiny_config.method = "dgm"  # class-incremental only
  tiny_config.dataset = "permuted-mnist"
  with pytest.raises(
    ConfigError,
    match=r"method dgm runs on class-incremental benchmarks and "
    r"permuted-mnist is domain-incremental: set --config.dataset to one of .*"
    r"dgm-mnist",
  ):
    config_lib.validate(tiny_config)


@pytest.mark.parametrize("grow", [0, 3])
def test_resume_mid_task_equals_an_uninterrupted_run(toy, tmp_path, monkeypatch, grow):
  toy.anchored.grow = grow
  reference = trainer.train_and_evaluate(toy, str(tmp_path / "ref"))
  with monkeypatch.context() as m:
    crash_in_chunk(m, 4)  # The second chunk of task 2, after the task-1 hook grew.
    with pytest.raises(Crash):
      trainer.train_and_evaluate(toy, str(tmp_path / "run"))
  saved = Checkpointer(str(tmp_path / "run" / "checkpoints"), 50).steps()
  assert saved[-1] == 6  # mid task 2
  resumed = trainer.train_and_evaluate(toy, str(tmp_path / "run"))
  assert _comparable(resumed) == _comparable(reference)
  step, fingerprint, layout = _final_state(tmp_path / "run")
  assert (step, fingerprint) == _final_state(tmp_path / "ref")[:2]
  # The hidden layer grew at each of the five task ends; one compile per shape.
  assert layout["learner.params.u"][0][1] == 5 * grow
  assert reference["train"]["compiles"] == (5 if grow else 1)


def test_growing_state_in_several_seeds_equals_their_one_seed_runs(toy, tmp_path):
  toy.anchored.grow = 2
  toy.train.max_steps_per_task = 2
  toy.seeds = "0,1"
  toy.train.seed_strategy = "unroll"
  multi = trainer.train_and_evaluate(toy, str(tmp_path / "multi"))
  for run in multi["runs"]:
    one = toy.copy_and_resolve_references()
    one.seeds, one.seed = "", run["seed"]
    single = trainer.train_and_evaluate(one, str(tmp_path / f"seed_{run['seed']}"))
    assert run["class_il"] == single["class_il"] and run["task_il"] == single["task_il"]
    np.testing.assert_allclose(
      [e["loss"] for e in run["log"]], [e["loss"] for e in single["log"]], rtol=1e-6
    )
  assert multi["runs"][0]["class_il"] != multi["runs"][1]["class_il"]


@register_benchmark
class TwoHalves(ClassSplit):
  """A benchmark in a few lines: MNIST's digits 0-4, then 5-9."""

  name = "two-halves"
  dataset = "mnist"
  num_tasks = 2
  classes_per_task = 5


def test_a_benchmark_added_in_one_class_trains_with_any_method(tiny_data, tiny_config, tmp_path):
  tiny_config.dataset = "two-halves"
  tiny_config.method = "er"
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  config_lib.validate(tiny_config)
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  matrix = results["class_il"]["matrix"]
  assert len(matrix) == 3 and matrix[1][1] is None and None not in matrix[2]
  exp = trainer.Experiment(tiny_config)
  assert [len(ix) for ix in exp.benchmark.task_indices] == [5 * 12, 5 * 12]
  assert results["train"]["steps"] == 6
