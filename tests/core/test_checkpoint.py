"""Checkpoints: round trip, resumption equal to an uninterrupted run, corruption, signals."""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_live import read_lines

from dynamos_jax import chunks as runner
from dynamos_jax import trainer
from dynamos_jax.checkpoint import Checkpointer, config_differences
from dynamos_jax.errors import InputError

from conftest import ROOT, subprocess_env


def _comparable(results):
  """A run's results without wall-clock timings."""
  return {k: v for k, v in results.items() if k != "train"} | {"steps": results["train"]["steps"]}


def _final_fingerprint(workdir):
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  step = checkpoints.steps()[-1]
  path = os.path.join(workdir, "checkpoints", str(step), "progress", "metadata")
  with open(path) as f:
    return step, json.load(f)["fingerprint"]


@pytest.fixture
def small(tiny_data, tiny_config):
  tiny_config.epochs = 1
  tiny_config.checkpoint.every_steps = 2
  tiny_config.checkpoint.keep = 50
  return tiny_config


@pytest.mark.parametrize("method", ["dynamos", "sgd"])  # sgd: no buffer (zero-size arrays)
def test_round_trip_restores_state_and_typed_key(small, tmp_path, method):
  small.method = method
  exp = trainer.Experiment(small)
  state = exp.initial_state()
  state = state.replace(step=state.step + 7)
  ckpt = Checkpointer(str(tmp_path / "ck"), keep=2)
  ckpt.save(7, state, {"note": "x"})
  restored, progress = ckpt.restore_latest(exp.initial_state())
  assert progress["note"] == "x" and int(restored.step) == 7
  assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.tree.map(np.asarray, restored.replace(key=jax.random.key_data(restored.key))),
    jax.tree.map(np.asarray, state.replace(key=jax.random.key_data(state.key))),
  )


class _Crash(Exception):
  pass


def _crash_after(monkeypatch, chunks, action):
  """Makes ChunkRunner.run call ``action`` after its ``chunks``-th call."""
  original = runner.ChunkRunner.run
  calls = {"n": 0}

  def run(self, *args):
    out = original(self, *args)
    calls["n"] += 1
    if calls["n"] == chunks:
      action()
    return out

  monkeypatch.setattr(runner.ChunkRunner, "run", run)


def test_crash_and_resume_equals_uninterrupted_run(small, tmp_path, monkeypatch):
  reference = trainer.train_and_evaluate(small, str(tmp_path / "ref"))
  with monkeypatch.context() as m:

    def crash():
      raise _Crash()

    _crash_after(m, 7, crash)
    with pytest.raises(_Crash):
      trainer.train_and_evaluate(small, str(tmp_path / "run"))
  saved = Checkpointer(str(tmp_path / "run" / "checkpoints"), 50).steps()
  assert saved and saved[-1] < reference["train"]["steps"]
  resumed = trainer.train_and_evaluate(small, str(tmp_path / "run"))
  assert _comparable(resumed) == _comparable(reference)
  assert _final_fingerprint(tmp_path / "run") == _final_fingerprint(tmp_path / "ref")
  # The live stream reads like the uninterrupted run's (the re-run steps once).
  assert read_lines(tmp_path / "run") == read_lines(tmp_path / "ref")


def test_max_tasks_stops_with_complete_results_and_goes_on_when_raised(small, tmp_path):
  small.train.max_steps_per_task = 3
  reference = trainer.train_and_evaluate(small, str(tmp_path / "ref"))
  small.train.max_tasks = 2
  stopped = trainer.train_and_evaluate(small, str(tmp_path / "run"))
  assert (stopped["train"]["tasks_trained"], stopped["train"]["tasks"]) == (2, 5)
  assert reference["train"]["tasks_trained"] == 5
  for protocol in ("class_il", "task_il"):
    matrix = stopped[protocol]["matrix"]
    assert matrix == reference[protocol]["matrix"][:3]  # untrained, after tasks 1 and 2
    # The metrics of a two-task run: forgetting and BWT of task 1 exist.
    assert stopped["metrics"][protocol]["backward_transfer"] == pytest.approx(
      matrix[2][0] - matrix[1][0]
    )
  assert stopped["log"] == reference["log"][: len(stopped["log"])]
  assert json.loads((tmp_path / "run" / "results.json").read_text())["train"]["tasks_trained"] == 2
  # The same limit again trains nothing more; raised, the run goes on to the end.
  again = trainer.train_and_evaluate(small, str(tmp_path / "run"))
  assert again["train"]["steps"] == stopped["train"]["steps"]
  small.train.max_tasks = 0
  resumed = trainer.train_and_evaluate(small, str(tmp_path / "run"))
  assert _comparable(resumed) == _comparable(reference)


def test_sigterm_saves_and_resumes(small, tmp_path, monkeypatch):
  with monkeypatch.context() as m:
    _crash_after(m, 3, lambda: signal.raise_signal(signal.SIGTERM))
    with pytest.raises(trainer.Interrupted) as info:
      trainer.train_and_evaluate(small, str(tmp_path))
  assert info.value.exit_code == 128 + signal.SIGTERM
  assert "run the same command again" in str(info.value)
  step = Checkpointer(str(tmp_path / "checkpoints"), 50).steps()[-1]
  resumed = trainer.train_and_evaluate(small, str(tmp_path))
  assert resumed["train"]["steps"] > step
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_config_change_is_refused_unless_harmless(small, tmp_path):
  small.train.max_steps_per_task = 2
  trainer.train_and_evaluate(small, str(tmp_path))
  small.train.progress = True  # harmless
  small.checkpoint.keep = 4  # harmless
  trainer.train_and_evaluate(small, str(tmp_path))
  small.buffer_size = 9
  small.dynamos.lam = 1.0
  with pytest.raises(InputError, match=r"buffer_size: 8 -> 9.*dynamos.lam: 500.0 -> 1.0"):
    trainer.train_and_evaluate(small, str(tmp_path))
  small.resume = False  # starts over, keeping the old checkpoints aside
  trainer.train_and_evaluate(small, str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints.old-1")


def test_configs_saved_before_the_method_namespaces_compare_under_the_new_names():
  from dynamos_jax.config import base_config

  current = base_config()
  old = current.to_dict()
  old.update({k: old["dynamos"][k] for k in ("alpha", "beta", "kr", "tau")})
  old["warmup"] = dict(old["dynamos"]["warmup"])
  for k in ("alpha", "beta", "kr", "tau", "warmup"):
    del old["dynamos"][k]
  assert config_differences(old, current.to_dict()) == []
  old["kr"] = 0.5
  assert config_differences(old, current.to_dict()) == ["dynamos.kr: 0.5 -> 0.7"]


def test_config_differences():
  saved = {"seed": 0, "train": {"progress": True, "chunk_size": 4}, "resume": True}
  assert config_differences(
    saved, {"seed": 1, "train": {"progress": False, "chunk_size": 4}, "resume": False}
  ) == ["seed: 0 -> 1"]
  # A key added to the library after the run was saved counts as its default.
  assert config_differences({"seed": 0}, {"seed": 0, "derpp": {"alpha": 1.0}}) == []
  assert config_differences({"seed": 0}, {"seed": 0, "derpp": {"alpha": 0.3}}) == [
    "derpp.alpha: 1.0 -> 0.3"
  ]


def _garble(step_dir):
  """Overwrites the bytes of every data file under the state item."""
  files = [
    p
    for p in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
    if os.path.isfile(p) and os.path.getsize(p) > 0
  ]
  assert files
  for path in files:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
      f.write(os.urandom(size))


def test_garbled_newest_checkpoint_falls_back_to_previous(small, tmp_path, capsys):
  small.train.max_steps_per_task = 4
  trainer.train_and_evaluate(small, str(tmp_path))
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), 50)
  steps = ckpt.steps()
  _garble(os.path.join(tmp_path, "checkpoints", str(steps[-1])))
  exp = trainer.Experiment(small)
  state, progress = ckpt.restore_latest(exp.initial_state())
  assert progress["total_steps"] == steps[-2]
  assert f"checkpoint {steps[-1]}" in capsys.readouterr().err
  assert ckpt.steps() == steps  # nothing deleted
  for step in steps[:-1]:
    _garble(os.path.join(tmp_path, "checkpoints", str(step)))
  with pytest.raises(InputError, match="none of the checkpoints"):
    ckpt.restore_latest(exp.initial_state())


def test_truncated_progress_is_reported(small, tmp_path, capsys):
  small.train.max_steps_per_task = 2
  trainer.train_and_evaluate(small, str(tmp_path))
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), 50)
  steps = ckpt.steps()
  path = os.path.join(tmp_path, "checkpoints", str(steps[-1]), "progress", "metadata")
  with open(path, "r+b") as f:
    f.truncate(10)
  _, progress = ckpt.restore_latest(trainer.Experiment(small).initial_state())
  assert progress["total_steps"] == steps[-2]
  assert "unusable" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_checkpoint(small, tmp_path, monkeypatch):
  original = runner.ChunkRunner.run
  calls = {"n": 0}

  def run(self, *args):
    state, metrics = original(self, *args)
    calls["n"] += 1
    if calls["n"] == 4:
      metrics = dict(metrics, loss=np.full_like(metrics["loss"], np.nan))
    return state, metrics

  monkeypatch.setattr(runner.ChunkRunner, "run", run)
  with pytest.raises(InputError, match=r"non-finite loss at step \d+.*last good checkpoint"):
    trainer.train_and_evaluate(small, str(tmp_path))
  assert Checkpointer(str(tmp_path / "checkpoints"), 50).steps()


# Three processes train: the slow tier. The fast tier's crash and resume, in this process:
# test_crash_and_resume_equals_uninterrupted_run, test_sigterm_saves_and_resumes.
@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume(tmp_path):
  """A real process killed with SIGKILL resumes to the uninterrupted run's results."""
  args = [
    sys.executable,
    "-m",
    "dynamos_jax.run",
    "--config=configs/quickstart.py",
    "--config.model.nf=8",
    "--config.model.mlp_reduction=4",
    "--config.epochs=1",
    "--config.train.max_steps_per_task=6",
    "--config.train.chunk_size=2",
    "--config.checkpoint.every_steps=2",
    "--config.checkpoint.keep=2",
    "--config.train.progress=False",
  ]
  env = subprocess_env()
  ref = subprocess.run(
    args + [f"--workdir={tmp_path / 'ref'}"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert ref.returncode == 0, ref.stderr
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
    args + [f"--workdir={workdir}"],
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 300
  # Until the first checkpoint is complete: Orbax writes STEP.orbax-checkpoint-tmp-*
  # and renames it to STEP when done.
  complete = lambda: [
    p for p in glob.glob(str(workdir / "checkpoints" / "[0-9]*")) if os.path.basename(p).isdigit()
  ]
  while time.time() < deadline and not complete():
    time.sleep(0.2)
  time.sleep(random.Random().uniform(0.0, 1.5))  # a random moment, saves included
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.kill()
  assert proc.wait() == -signal.SIGKILL
  # Killed mid-run: no results, and the newest complete checkpoint is short of the end.
  total = json.loads((tmp_path / "ref" / "results.json").read_text())["train"]["steps"]
  assert total == 5 * 6
  assert not (workdir / "results.json").exists()
  saved = Checkpointer(str(workdir / "checkpoints"), keep=2).steps()
  assert saved and saved[-1] < total, saved
  resumed = subprocess.run(
    args + [f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  assert resumed.returncode == 0, resumed.stderr
  assert f"resuming from step {saved[-1]} " in resumed.stderr
  load = lambda d: _comparable(json.loads((d / "results.json").read_text()))
  assert load(workdir) == load(tmp_path / "ref")
  assert _final_fingerprint(workdir) == _final_fingerprint(tmp_path / "ref")


def test_evaluate_command_reproduces_the_last_row(small, tmp_path, monkeypatch):
  from dynamos_jax import evaluate

  small.train.max_steps_per_task = 3
  results = trainer.train_and_evaluate(small, str(tmp_path))
  fresh = evaluate.evaluate_workdir(str(tmp_path))
  assert fresh["tasks_seen"] == 5 and fresh["step"] == results["train"]["steps"]
  assert fresh["class_il"] == results["class_il"]["matrix"][-1]
  assert fresh["task_il"] == results["task_il"]["matrix"][-1]
  with pytest.raises(InputError, match="no checkpoints"):
    evaluate.evaluate_workdir(str(tmp_path / "nothing"))


def test_a_workdir_that_cannot_be_a_directory_is_refused_before_loading(
  small, tmp_path, monkeypatch
):
  (tmp_path / "file").write_text("a regular file")
  loaded = []
  monkeypatch.setattr(
    "dynamos_jax.benchmarks.DeviceData.load",
    lambda *a: loaded.append(a) or pytest.fail("data loaded first"),
  )
  with pytest.raises(InputError, match="cannot be a run directory"):
    trainer.train_and_evaluate(small, str(tmp_path / "file" / "run"))
  assert not loaded and (tmp_path / "file").read_text() == "a regular file"


def test_evaluate_during_the_warmup_predicts_without_agents(small, tmp_path, monkeypatch):
  from dynamos_jax import evaluate

  small.train.max_steps_per_task = 5  # Task 1: warm-up steps 0-2 (one chunk), then main.
  with monkeypatch.context() as m:

    def crash():
      raise _Crash()

    _crash_after(m, 2, crash)  # The warm-up chunk is saved.
    with pytest.raises(_Crash):
      trainer.train_and_evaluate(small, str(tmp_path))
  exp, state, progress = trainer.restore_run(str(tmp_path))
  assert progress["total_steps"] == 3 and exp.phase_after(progress["next_chunk"]) == "warmup"
  images, _ = exp.benchmark.test_set()
  off = exp.predictors(state.learner, "warmup")(images, None)
  gated = exp.predictors(state.learner, "main")(images, None)
  assert not np.allclose(off, gated)  # The agents would change the predictions.
  phases, original = [], trainer.Experiment.evaluate
  monkeypatch.setattr(
    trainer.Experiment,
    "evaluate",
    lambda self, s, phase: phases.append(phase) or original(self, s, phase),
  )
  fresh = evaluate.evaluate_workdir(str(tmp_path))
  assert phases == ["warmup"]
  assert fresh["class_il"][0] == exp.evaluate(state, "warmup")["class_il"][0]


def test_reading_a_run_whose_dataset_or_method_is_not_defined_is_one_error(
  small, tmp_path, monkeypatch
):
  from dynamos_jax import benchmarks, methods

  small.train.max_steps_per_task = 1
  trainer.train_and_evaluate(small, str(tmp_path))
  for table, kind, name in (
    (benchmarks.REGISTRY, "dataset", small.dataset),
    (methods.REGISTRY, "method", small.method),
  ):
    with monkeypatch.context() as m:
      m.delitem(table, name)
      with pytest.raises(InputError, match=f"run of {kind} '{name}', which this installation"):
        trainer.restore_seeds(str(tmp_path))
  assert trainer.restore_seeds(str(tmp_path))  # both back: the run reads again
