"""The validation split (``data.validation``, docs/running.md#a-validation-split): held out
per class from the seed, scored after every task beside the test set, kept on resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import benchmarks, metrics, reporting, trainer
from dynamos_jax.benchmarks.arrays import from_arrays
from dynamos_jax.benchmarks.base import REGISTRY
from dynamos_jax.benchmarks.task_split import TaskSplit
from dynamos_jax.config import validate
from dynamos_jax.errors import ConfigError

from conftest import Crash, crash_in_chunk, tiny_dataset

F = 0.2  # 12 training images a class: round(0.2 * 12) = 2 held out.


class TinyTaskSplit(TaskSplit):
  """A task-incremental split of the tiny dataset's 10 classes (not registered)."""

  name = "tiny-task-split"
  dataset = "mnist"
  num_tasks = 5
  classes_per_task = 2


def _device_data(host):
  return benchmarks.DeviceData(
    host,
    jax.device_put(host.train_images),
    jax.device_put(host.train_labels),
    jax.device_put(host.test_images),
  )


def _arrays_benchmark(host):
  """A ``from_arrays`` benchmark of the tiny dataset: tasks of 3, 3 and 4 classes."""
  return from_arrays(
    (host.train_images, host.train_labels),
    (host.test_images, host.test_labels),
    [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]],
    name="validation-split-arrays",
  )


def _build(cls, config, host, validation, seed=0, joint=False):
  config.data.validation = validation
  return cls(config, _device_data(host), jax.random.key(seed), joint)


def _benchmark_class(name):
  if name == "task-split":
    return TinyTaskSplit
  if name == "arrays":  # Renumbered in task order: the tiny dataset's labels as they are.
    return _arrays_benchmark(tiny_dataset())
  return REGISTRY[name]


@pytest.mark.parametrize("name", ["seq-mnist", "arrays", "task-split", "permuted-mnist"])
def test_split_is_stratified_disjoint_and_covers_each_task(tiny_config, name):
  cls, host = _benchmark_class(name), tiny_dataset()
  n = len(host.train_labels)
  image_of = (lambda s: s % n) if name == "permuted-mnist" else (lambda s: s)
  whole = _build(cls, tiny_config, host, 0.0)
  split = _build(cls, tiny_config, host, F)
  assert whole.validation == 0.0 and all(len(v) == 0 for v in whole.validation_indices)
  held = image_of(split.validation_indices[0])
  for t, (every, train, valid) in enumerate(
    zip(whole.task_indices, split.task_indices, split.validation_indices)
  ):
    assert set(train).isdisjoint(valid)
    assert sorted(np.concatenate([train, valid])) == sorted(every)
    np.testing.assert_array_equal(valid, np.sort(valid))  # file order
    assert split.task_data(t).size == len(train) and split.batches[t] == -(-len(train) // 5)
    # Permuted MNIST holds the same images out of every task (as it tests them all).
    if name == "permuted-mnist":
      np.testing.assert_array_equal(image_of(valid), held)
  every_held = held if name == "permuted-mnist" else np.concatenate(split.validation_indices)
  labels = host.train_labels[every_held]
  for c in range(10):  # Stratified: each class gives round(f n) of its n.
    assert np.sum(labels == c) == round(F * np.sum(host.train_labels == c)) == 2
  # The epochs draw from the training part only.
  for t in (0, len(split.task_indices) - 1):
    epoch = split.epoch_data(t, 0)
    order = np.asarray(epoch.order)[np.asarray(epoch.mask)]
    assert sorted(order) == sorted(split.task_indices[t])


def test_joint_run_trains_on_every_tasks_training_part(tiny_config):
  host = tiny_dataset()
  joint = _build(REGISTRY["seq-mnist"], tiny_config, host, F, joint=True)
  alone = _build(REGISTRY["seq-mnist"], tiny_config, host, F)
  np.testing.assert_array_equal(joint.task_indices[0], np.sort(np.concatenate(alone.task_indices)))
  assert [list(v) for v in joint.validation_indices] == [list(v) for v in alone.validation_indices]


def test_same_seed_same_split_another_seed_another(tiny_data, tiny_config):
  tiny_config.method, tiny_config.data.validation = "sgd", F
  first = trainer.Experiment(tiny_config).benchmark.validation_indices
  again = trainer.Experiment(tiny_config).benchmark.validation_indices
  other = trainer.Experiment(tiny_config, seed=1).benchmark.validation_indices
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def _oracle(host, transform=lambda images, task: images, shared_head=False, k=2):
  """A predict that knows every training image's label: one-hot logits of the label of an
  image it finds (``transform(image, task)`` of a training image), zeros else. With
  ``shared_head`` the label within its task (a task split's head)."""
  table = [
    {np.asarray(x).tobytes(): int(y) for x, y in zip(transform(host.train_images, t), labels)}
    for t, labels in enumerate([host.train_labels] * 5)
  ]

  def predict(images, task):
    t = 0 if task is None else int(task)
    found = [table[t].get(np.asarray(x).tobytes(), -1) for x in np.asarray(images)]
    found = np.asarray(found)
    if shared_head:
      found = np.where(found >= 0, found % k, -1)
    width = k if shared_head else 10
    return jnp.asarray(np.eye(width + 1)[found][:, :width])

  return predict


def test_class_and_task_splits_score_their_held_out_images(tiny_config):
  host = tiny_dataset()
  for cls, shared in ((REGISTRY["seq-mnist"], False), (TinyTaskSplit, True)):
    b = _build(cls, tiny_config, host, F)
    images, labels = b.validation_set()
    rows = np.concatenate(b.validation_indices)
    np.testing.assert_array_equal(np.asarray(images), host.train_images[rows])
    np.testing.assert_array_equal(labels, host.train_labels[rows] % b.num_classes)
    scores = b.evaluate(_oracle(host, shared_head=shared), batch_size=4, split="valid")
    assert scores == {"class_il": [100.0] * 5, "task_il": [100.0] * 5}
    # The test images are none of the training images: the oracle knows none of them.
    assert b.evaluate(_oracle(host, shared_head=shared), batch_size=4)["task_il"] != [100.0] * 5


def test_permuted_mnist_validation_images_get_their_tasks_permutation(tiny_config):
  host = tiny_dataset()
  b = _build(REGISTRY["permuted-mnist"], tiny_config, host, F)
  perms = b.permutations

  def permuted(images, task):
    flat = images[..., 0].reshape(len(images), -1)[:, perms[task]]
    return flat.reshape(*images.shape[:3], 1)

  scores = b.evaluate(_oracle(host, permuted), batch_size=4, split="valid")
  assert scores == {"class_il": [100.0] * 5, "task_il": [100.0] * 5}
  # A predict that knows only the unpermuted images is right on task 1 alone.
  plain = b.evaluate(_oracle(host, lambda images, task: permuted(images, 0)), 4, split="valid")
  assert plain["class_il"][0] == 100.0 and max(plain["class_il"][1:]) < 20.0
  images, labels = b.task_validation_set(3)
  rows = b.validation_indices[3] % len(host.train_labels)
  np.testing.assert_array_equal(np.asarray(images), permuted(host.train_images[rows], 3))
  np.testing.assert_array_equal(labels, host.train_labels[rows])


def _rows(record):
  return {p: record["validation"][p]["matrix"] for p in ("class_il", "task_il")}


def test_run_records_validation_rows_and_a_resume_keeps_them(
  tiny_data, tiny_config, tmp_path, monkeypatch
):
  tiny_config.method, tiny_config.epochs = "anchored", 1
  tiny_config.train.max_steps_per_task, tiny_config.train.chunk_size = 3, 2
  tiny_config.checkpoint.every_steps = 2
  tiny_config.data.validation = F
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path / "ref"))
  written = json.loads((tmp_path / "ref" / "results.json").read_text())
  assert written["validation"] == results["validation"]
  for protocol in ("class_il", "task_il"):
    matrix = results["validation"][protocol]["matrix"]
    assert len(matrix) == 6 and all(len(row) == 5 for row in matrix)
    assert all(
      (v is None) == (0 < i <= j) for i, row in enumerate(matrix) for j, v in enumerate(row)
    )
    before = results["validation"][protocol]["before"]
    assert results["validation_metrics"][protocol] == metrics.summarize(matrix, before)
    assert results["validation"][protocol]["final_average"] == metrics.final_average(matrix)
  # The rows are the benchmark's evaluation of the validation split: the last one again.
  exp, state, progress = trainer.restore_run(str(tmp_path / "ref"))
  again = exp.evaluate(state, exp.phase_after(progress["next_chunk"]), split="valid")
  assert results["validation"]["class_il"]["matrix"][-1] == again["class_il"]

  # Stopped in task 3 (chunk 5 of 10), resumed: the same validation rows.
  with monkeypatch.context() as m:
    crash_in_chunk(m, 5)
    with pytest.raises(Crash):
      trainer.train_and_evaluate(tiny_config, str(tmp_path / "run"))
  resumed = trainer.train_and_evaluate(tiny_config, str(tmp_path / "run"))
  assert _rows(resumed) == _rows(results)
  assert resumed["validation_metrics"] == results["validation_metrics"]
  assert resumed["class_il"] == results["class_il"]


def test_multi_seed_run_summarises_the_validation_metrics_over_seeds(
  tiny_data, tiny_config, tmp_path
):
  tiny_config.method, tiny_config.epochs, tiny_config.seeds = "anchored", 1, "0,1"
  tiny_config.train.max_steps_per_task, tiny_config.train.max_tasks = 2, 2
  tiny_config.data.validation = F
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  runs = results["runs"]
  assert [len(r["validation"]["class_il"]["matrix"]) for r in runs] == [3, 3]
  assert runs[0]["validation"] != runs[1]["validation"]  # Other seeds, other samples.
  summary = results["validation_summary"]
  for protocol in ("class_il", "task_il"):
    values = [r["validation_metrics"][protocol]["final_average"] for r in runs]
    assert summary[protocol]["final_average"]["values"] == values
    assert summary[protocol]["final_average"]["mean"] == pytest.approx(np.mean(values))


def test_results_without_a_split_are_unchanged_and_the_summary_is_over_seeds():
  matrix = [[10.0, 20.0], [50.0, None], [40.0, 60.0]]
  before = {"class_il": [10.0, 30.0], "task_il": [10.0, 30.0]}
  progress = {"class_il": matrix, "task_il": matrix, "before": before}
  plain = reporting.accuracy_results(progress)
  assert set(plain) == {"class_il", "task_il", "metrics"}
  valid_matrix = [[0.0, 0.0], [80.0, None], [70.0, 90.0]]
  out = reporting.accuracy_results(
    {**progress, "validation": {**progress, "class_il": valid_matrix}}
  )
  assert out["validation"]["class_il"]["final_average"] == 80.0
  assert out["validation_metrics"]["task_il"] == plain["metrics"]["task_il"]
  runs = [{"seed": s, **out} for s in (0, 1)]
  summary = reporting.validation_summary(runs)["validation_summary"]
  assert summary["class_il"]["final_average"] == {"mean": 80.0, "std": 0.0, "values": [80.0] * 2}
  assert reporting.validation_summary([{"seed": 0, **plain}]) == {}
  config = {"data": {"validation": F}}
  several = {"config": config, "runs": runs, "summary": {}, "validation_summary": summary}
  assert reporting.format_results(several).splitlines()[-1] == (
    "validation split (data.validation=0.2) final average over 2 seeds: "
    "class-IL 80.00 +- 0.00, task-IL 50.00 +- 0.00"
  )
  assert reporting.format_results({"config": config, **out}).splitlines()[-1] == (
    "validation split (data.validation=0.2) final average: class-IL 80.00, task-IL 50.00"
  )
  assert "validation" not in reporting.format_results({"config": {"data": {}}, **plain})


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_fractions_are_one_line_errors(tiny_config, value):
  tiny_config.data.validation = value
  with pytest.raises(ConfigError, match=r"data.validation must be in \[0, 1\)") as info:
    validate(tiny_config)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize(
  "dataset, why",
  [("mnist-360", "general-continual-learning"), ("dgm-mnist", "dgm.selection=best_valid")],
)
def test_benchmarks_without_a_split_refuse_it_in_one_line(tiny_config, dataset, why):
  tiny_config.dataset, tiny_config.data.validation, tiny_config.epochs = dataset, F, 1
  tiny_config.method = "dgm" if dataset.startswith("dgm") else "sgd"
  with pytest.raises(ConfigError, match=why) as info:
    validate(tiny_config)
  assert "\n" not in str(info.value) and "drop --config.data.validation" in str(info.value)


def test_a_split_that_leaves_a_task_without_validation_samples_is_refused(tiny_config):
  host = tiny_dataset()
  with pytest.raises(ConfigError, match="task 1 of seq-mnist 24 training and 0 validation"):
    _build(REGISTRY["seq-mnist"], tiny_config, host, 0.01)  # round(0.12) = 0 a class
