"""dgm.selection=best_valid (methods/dgm/selection.py) and DGM's after-task report, tiny runs.

One uninterrupted two-seed DGMw run over two one-class tasks (module
fixture) with every end_epoch call recorded: the tests recompute each
evaluation from the state it saw (D applied directly, accuracies in NumPy)
on the seed's own held-out split, check which epochs were evaluated, that
the record is the test accuracy of the best validation evaluation while the
accuracy matrix stays the final model's, that a run resumed mid-task keeps
the same records, and that the after-task samples come from one fixed noise
per seed. Those tests train (the slow tier); the selection rule on scripted
accuracies, the seeds' own splits and bad input are the fast tier's.
"""

import os
import types

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import analyze, sweep, task_arrays, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.checkpoint import Checkpointer
from dynamos_jax.data import sources
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.dgm import selection as dgm_selection
from dynamos_jax.methods.dgm import summary as dgm_summary
from dynamos_jax.methods.dgm.discriminator import Discriminator, to_unit
from dynamos_jax.seeds import Seeds

from conftest import Crash, crash_in_chunk, tiny_dataset
import dgm_two_tasks

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("dgm_selection")

# 14 images per class: int(0.15 * 14) = 2 held out, 12 train in 3 batches of 4.
EPOCHS, BATCHES = 8, 3
EVALUATED = (1, 3, 5, 7, 8)  # e = 0, 2, 4, 6 (e % eval_every == 0) and the task's last
SEEDS = (0, 1)


def _config():
  c = config_lib.base_config()
  c.method, c.dataset, c.data.source = "dgm", dgm_two_tasks.NAME, "bundled"
  # A fast G (lr_g): its replay of class 0 becomes good enough, within task 2, for D
  # to tell real 0s from 1s, so D's accuracies move between evaluations.
  c.dgm.update(
    variant="w", ngf=2, ndf=4, nz=16, lambda_ru=0.5, lr_g=1e-2, selection="best_valid", eval_every=2
  )
  c.seeds = ",".join(map(str, SEEDS))
  c.batch_size, c.epochs = 4, EPOCHS
  c.train.chunk_size = 2  # chunks [0, 2), [2, 3) of each epoch
  c.train.progress, c.train.eval_batch_size = False, 16
  c.checkpoint.every_steps, c.checkpoint.keep = 6, 20  # every second epoch, and task ends
  return c


@pytest.fixture(scope="module")
def patched():
  dataset = tiny_dataset(per_class=14, test_per_class=8, size=8)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    yield


@pytest.fixture(scope="module")
def reference(patched, tmp_path_factory):
  """The uninterrupted run: (results, workdir, [(task, state seen by end_epoch)]): the
  trainer calls each seed's hook in turn, seed 0 first."""
  calls, original = [], dgm_selection.end_epoch

  def spy(method, state, task):
    calls.append((task.index, jax.device_get(state)))
    return original(method, state, task)

  workdir = str(tmp_path_factory.mktemp("select") / "ref")

  def no_test_pass(*args):  # DGM scores itself: the trainer's per-epoch evaluation is skipped
    raise AssertionError("the trainer evaluated for end_epoch")

  with pytest.MonkeyPatch.context() as m:
    m.setattr(dgm_selection, "end_epoch", spy)
    m.setattr(Seeds, "_task_accuracy", staticmethod(no_test_pass))
    results = trainer.train_and_evaluate(_config(), workdir)
  return results, workdir, calls


def _seen_accuracy(learner, images, labels, classes):
  """[classes] per-class accuracy (%) of D's aux head, eval mode, unseen logits excluded."""
  variables = {"params": learner.d, "batch_stats": learner.d_stats}
  rows = np.flatnonzero(np.asarray(labels) < classes)
  _, logits = Discriminator(10, 4).apply(variables, to_unit(jnp.asarray(images)[rows]), train=False)
  predicted = np.argmax(np.asarray(logits)[:, :classes], -1)
  y = np.asarray(labels)[rows]
  return np.array([100.0 * np.mean(predicted[y == c] == c) for c in range(classes)])


@pytest.mark.slow
def test_the_record_is_the_test_accuracy_of_the_best_validation_evaluation(reference):
  results, workdir, calls = reference
  assert [t for t, _ in calls] == [t for t in range(2) for _ in range(EPOCHS * len(SEEDS))]
  for i, (exp, state, _) in enumerate(trainer.restore_seeds(workdir)):
    bench, records = exp.benchmark, jax.device_get(state.learner.selection)
    reports = task_arrays.load(workdir, exp.seed)
    matrix = results["runs"][i]["class_il"]["matrix"]
    for t in range(2):
      seen = [s for task, s in calls[i :: len(SEEDS)] if task == t]
      epochs = [int(s.step_in_task) // BATCHES for s in seen]
      assert epochs == list(range(1, EPOCHS + 1))  # after every epoch
      evaluated = [s for s, e in zip(seen, epochs) if e in EVALUATED]
      valid = [np.mean(_seen_accuracy(s, *bench.validation_set(), t + 1)) for s in evaluated]
      test = [_seen_accuracy(s, *bench.test_set(), t + 1) for s in evaluated]
      best = int(np.argmax(valid))  # the first of the best
      assert records["valid"][t] == pytest.approx(valid[best], abs=1e-4)
      assert records["epoch"][t] == EVALUATED[best]
      np.testing.assert_allclose(records["test"][t][: t + 1], test[best], atol=1e-4)
      np.testing.assert_array_equal(records["test"][t][t + 1 :], 0.0)
      # The same record in the after-task report.
      assert reports[t]["best_valid"] == pytest.approx(valid[best], abs=1e-4)
      assert reports[t]["best_valid_epoch"] == EVALUATED[best]
      np.testing.assert_allclose(reports[t]["best_valid_test"], test[best], atol=1e-4)
      # The accuracy matrix stays the final model's: D after the task's last epoch.
      np.testing.assert_allclose(matrix[t + 1][: t + 1], test[-1], atol=1e-4)
    summary = dgm_selection.summary(state.learner, 2)
    assert [r["epoch"] for r in summary] == list(records["epoch"])
    assert results["runs"][i]["method"] == {"best_valid": summary}  # results.json has it
    assert summary[1]["test_average"] == pytest.approx(np.mean(records["test"][1][:2]))
  # Whether D's accuracies move between evaluations is the CPU's trajectory; the choice
  # among different accuracies is test_selection_rule_on_scripted_accuracies's.


def _same_reports(a, b):
  assert len(a) == len(b) == 2
  for x, y in zip(a, b):
    assert sorted(x) == sorted(y)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.slow
def test_a_resume_mid_task_keeps_the_records(reference, tmp_path):
  _, ref_dir, _ = reference
  workdir = str(tmp_path / "run")
  # Chunks [0, 2) and [2, 3) of each epoch, 16 per task: chunk 22 ends task 2's third
  # epoch (step 33); the resume starts from step 30's checkpoint, after task 2's first
  # evaluation, and runs its second one again.
  with pytest.MonkeyPatch.context() as m:
    crash_in_chunk(m, 22)
    with pytest.raises(Crash):
      trainer.train_and_evaluate(_config(), workdir)
  assert len(task_arrays.load(workdir, 0)) == 1
  assert Checkpointer(os.path.join(workdir, "checkpoints"), 20).steps()[-1] == 30
  trainer.train_and_evaluate(_config(), workdir)
  for (_, resumed, _), (_, uninterrupted, _) in zip(
    trainer.restore_seeds(workdir), trainer.restore_seeds(ref_dir)
  ):
    a, b = (jax.device_get(s.learner.selection) for s in (resumed, uninterrupted))
    for k in ("valid", "epoch", "test"):
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  for seed in SEEDS:
    _same_reports(task_arrays.load(workdir, seed), task_arrays.load(ref_dir, seed))


@pytest.mark.slow
def test_samples_after_each_task_come_from_one_fixed_noise(reference):
  _, workdir, _ = reference
  first = []
  for exp, state, _ in trainer.restore_seeds(workdir):
    method, learner = exp.method, state.learner
    reports = task_arrays.load(workdir, exp.seed)
    assert [r["samples"].shape for r in reports] == [(1, 8, 32, 32, 1), (2, 8, 32, 32, 1)]
    assert all(r["samples"].dtype == np.uint8 for r in reports)
    # The noise: from the seed's method key and SAMPLES_KEY only, class c's one-hot prefix.
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(learner.key)), 16)
    z = jax.random.normal(key, (8, 16))
    for c in range(2):
      zc = z.at[:, :10].set(jax.nn.one_hot(np.full(8, c), 10))
      images = np.asarray(dgm_summary.generate(method, learner, zc, c))
      expected = np.clip(np.round(127.5 * (images + 1.0)), 0, 255)
      np.testing.assert_allclose(reports[1]["samples"][c], expected, atol=1)
    # Class 0's row after task 2 is task 1's row up to the soft-mask drift
    # (docs/dgm.md#soft-masks-for-past-tasks):
    # the same noise; other noise gives other images.
    # (The drift's size is the CPU's: up to 3 grey levels on a Zen 4, 6 on an Intel Xeon.)
    after1, after2 = (r["samples"][0].astype(int) for r in reports)
    other = z[::-1].at[:, :10].set(jax.nn.one_hot(np.zeros(8, int), 10))
    other = np.round(127.5 * (np.asarray(dgm_summary.generate(method, learner, other, 0)) + 1))
    assert np.abs(after2 - after1).max() <= 8
    assert np.mean(np.abs(after2 - after1)) < 0.1 * np.mean(np.abs(other - after2))
    # Called directly, the hook gives what the trainer kept.
    direct = method.after_task(learner, exp.task_data(1), exp.benchmark)
    np.testing.assert_array_equal(direct["samples"], reports[1]["samples"])
    first.append(reports[0]["samples"].astype(int))
  assert np.abs(first[1] - first[0]).max() > 10  # each seed its own noise


@pytest.mark.slow
def test_analyze_reports_the_records_per_seed(reference):
  _, workdir, _ = reference
  numbers = analyze.analyze(workdir)
  for exp, state, _ in trainer.restore_seeds(workdir):
    dgm = numbers[exp.seed]["dgm"]
    assert dgm["best_valid"] == dgm_selection.summary(state.learner, 2)
    out = os.path.join(workdir, "analysis", f"seed_{exp.seed}")
    for t in (1, 2):
      assert os.path.getsize(os.path.join(out, f"dgm_samples_task{t}.png")) > 0


def test_a_run_stopped_after_its_first_task_reports_that_task_alone(reference, tmp_path):
  config = _config()
  config.train.max_tasks = 1
  results = trainer.train_and_evaluate(config, str(tmp_path))
  for run, full in zip(results["runs"], reference[0]["runs"]):
    assert run["method"]["best_valid"] == full["method"]["best_valid"][:1]


def test_the_seeds_benchmark_is_no_setting(patched):
  """Two seeds' methods hold their own benchmarks (their own held-out splits) and are
  still one method to jit and to a sweep, which sees only the settings that differ."""
  config = _config()
  first, second = trainer.Experiment(config, 0).method, trainer.Experiment(config, 1).method
  assert first.data.benchmark is not second.data.benchmark
  assert first == second and hash(first) == hash(second)
  config.dgm.lr_g = 2e-2
  other = trainer.Experiment(config, 1).method
  assert sweep.varying_fields([first, other]) == {("lr_g",): [1e-2, 2e-2]}


@pytest.mark.parametrize(
  "key, value, message",
  [("selection", "best", "unknown dgm.selection"), ("eval_every", 0, "dgm.eval_every")],
)
def test_bad_selection_input_is_one_line(key, value, message):
  config = _config()
  config.dgm[key] = value
  with pytest.raises(ConfigError, match=message) as err:
    config_lib.validate(config)
  assert "\n" not in str(err.value)


@flax.struct.dataclass
class _Stub:
  """The fields of DGMState that selection reads."""

  step_in_task: jax.Array
  batches: jax.Array
  selection: dict


def test_selection_rule_on_scripted_accuracies(monkeypatch):
  """Scripted seen-class accuracies through end_epoch: when it evaluates (every second
  epoch from the first, and the task's last, here cut by max_steps), the first of tied
  best averages kept even when they are not float32 numbers (200 / 3), a better one taken."""
  valid = iter([[100.0, 100 / 3], [100.0, 0.0], [100 / 3, 100.0], [100.0, 100.0]])
  test = iter([[90.0, 10.0], [80.0, 70.0]])
  calls = []

  def scripted(method, state, images, labels, classes):
    calls.append(images)
    return np.asarray(next(valid if images == "valid" else test))

  monkeypatch.setattr(dgm_selection, "seen_accuracies", scripted)
  bench = types.SimpleNamespace(
    validation_set=lambda: ("valid", None), test_set=lambda: ("test", None)
  )
  method = types.SimpleNamespace(
    epochs=10, eval_every=2, max_steps=21, d_statistics="running", data=dgm_selection.Data(bench)
  )
  state = _Stub(jnp.int32(0), jnp.int32(3), dgm_selection.empty("best_valid", 2, 10))
  task = types.SimpleNamespace(index=1)
  after = {}
  for epoch in range(1, 8):  # 21 steps: the 7th epoch is the task's last
    state = state.replace(step_in_task=jnp.int32(3 * epoch))
    state = dgm_selection.end_epoch(method, state, task)
    after[epoch] = jax.device_get(state.selection)
  # Evaluated after epochs 1, 3, 5 (e = 0, 2, 4) and 7 (the task's last); the test split
  # only when the validation average beats the best so far: epochs 1 and 7.
  assert calls == ["valid", "test", "valid", "valid", "valid", "test"]
  # Epoch 5 ties epoch 1 at 200 / 3 %: the record stays epoch 1's.
  assert list(after[5]["epoch"]) == [0, 1]
  np.testing.assert_allclose(after[5]["valid"], [-1.0, 200 / 3], rtol=1e-6)
  np.testing.assert_allclose(after[5]["test"][1][:2], [90.0, 10.0])
  assert list(after[7]["epoch"]) == [0, 7]
  np.testing.assert_allclose(after[7]["valid"], [-1.0, 100.0], rtol=1e-6)
  np.testing.assert_allclose(after[7]["test"][1], [80.0, 70.0] + [0.0] * 8)
  assert dgm_selection.due(method, state.replace(step_in_task=jnp.int32(6))) is None
