"""The Python API (dynamos_jax/api.py, benchmarks/arrays.py): configs, from_arrays, train, Results.

Fast tier: load_config's names, overrides and one-line errors; from_arrays'
checks and renumbering; one tiny ER run on arrays read back through Results.
Slow tier: every class-incremental method learns a separable arrays benchmark
above chance, and examples/own_data.py runs at smoke size.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import dynamos_jax as dj
from dynamos_jax import methods, trainer
from dynamos_jax.errors import ConfigError, DataError, InputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def separable(per_class: int, classes: int = 4, seed: int = 0):
  """uint8 [classes * per_class, 8, 8] images whose class c lights row c, labels [N]."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 40, (classes, per_class, 8, 8), dtype=np.uint8)
  for c in range(classes):
    x[c, :, c, :] += 200
  return x.reshape(-1, 8, 8), np.repeat(np.arange(classes), per_class)


def tiny(dataset: str, method: str = "er", **overrides):
  keys = dict(buffer_size=8, batch_size=4, minibatch_size=4, epochs=2)
  keys.update({"model.nf": 8, "model.mlp_reduction": 4, "dynamos.warmup.iterations": 3})
  keys.update({"train.progress": False, "train.eval_batch_size": 16})
  return dj.load_config("quickstart", dataset=dataset, method=method, **{**keys, **overrides})


# --- load_config -----------------------------------------------------------------------------


def test_load_config_by_name_path_and_argument():
  by_name = dj.load_config("dgm_mnist:dgma", epochs=3, **{"dgm.lambda_gp": 2.0})
  by_path = dj.load_config(os.path.join(ROOT, "configs", "dgm_mnist.py"), "dgma")
  assert by_name.dgm.variant == by_path.dgm.variant == "a"
  assert (by_name.epochs, by_name.dgm.lambda_gp) == (3, 2.0)
  assert by_path.epochs == 101 and by_path.dgm.lambda_gp == 1.0


@pytest.mark.parametrize(
  "name, overrides, error, message",
  [
    ("nope", {}, InputError, "no config 'nope'.*quickstart"),
    ("dgm_mnist:zzz", {}, ConfigError, "use one of dgmw, dgma, jt"),
    ("quickstart", {"dynamos.nokey": 1}, ConfigError, "unknown config key 'dynamos.nokey'"),
    ("quickstart", {"epochs": "many"}, ConfigError, "config key 'epochs'"),
    ("quickstart", {"epochs": 0}, ConfigError, "epochs must be >= 1"),
    ("quickstart", {"method": "nope"}, ConfigError, "unknown method 'nope'"),
  ],
)
def test_load_config_errors_are_one_line(name, overrides, error, message):
  with pytest.raises(error, match=message) as err:
    dj.load_config(name, **overrides)
  assert "\n" not in str(err.value)


# --- from_arrays ------------------------------------------------------------------------------


def _bad(**change):
  x, y = separable(6)
  args = dict(train=(x, y), test=(x, y), tasks=[[0, 1], [2, 3]], name="api-bad")
  args.update(change)
  return args


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(tasks=[[0, 1], [1, 2, 3]]), "label 1 is in task 0 and task 1"),
    (dict(tasks=[[0, 1], [2]]), r"train labels \[3\] are in no task"),
    (dict(tasks=[[0, 1], [2, 3, 7]]), r"labels \[7\] of the tasks have no training images"),
    (dict(tasks=[]), "non-empty list of lists"),
    (dict(train=(separable(6)[0], np.zeros(5, int))), r"train labels must be integers \[24\]"),
    (dict(train=(separable(6)[0] / 1.0, separable(6)[1])), r"floats in \[0, 200|floats in \["),
    (dict(test=(np.zeros((4, 9, 9), np.uint8), np.zeros(4, int))), "train images are"),
    (dict(train=(separable(6)[0].astype(np.int64), separable(6)[1])), "dtype int64"),
    (dict(name="seq-mnist"), "name 'seq-mnist' is taken"),
    (dict(kind="domain_il"), "unknown kind"),
  ],
)
def test_from_arrays_errors_are_one_line(change, message):
  with pytest.raises(DataError, match=message) as err:
    dj.benchmarks.from_arrays(**_bad(**change))
  assert "\n" not in str(err.value)


def test_from_arrays_renumbers_classes_in_task_order():
  """Tasks [[3, 1], [0], [2]]: task 0 trains on the images of labels 3 and 1 (as classes
  0 and 1), tasks of unequal sizes split the test set by the renumbered labels."""
  x, y = separable(5)
  benchmark = dj.benchmarks.from_arrays((x, y), (x, y), [[3, 1], [0], [2]], name="api-order")
  assert list(benchmark.classes) == [3, 1, 0, 2] and benchmark.num_tasks == 3
  exp = trainer.Experiment(tiny("api-order"), 0)
  train_labels = np.asarray(exp.benchmark.data.host.train_labels)
  for t, user_labels in enumerate([[3, 1], [0], [2]]):
    rows = exp.benchmark.task_indices[t]
    assert sorted(set(benchmark.classes[train_labels[rows]].tolist())) == sorted(user_labels)
    assert len(rows) == 5 * len(user_labels)
  images = exp.benchmark.data.host.train_images
  assert images.shape[1:] == (8, 8, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey repeated


def test_train_on_arrays_and_read_the_results():
  x, y = separable(20)
  tx, ty = separable(8, seed=1)
  dj.benchmarks.from_arrays((x, y), (tx, ty), [[2, 3], [0, 1]], name="api-run")
  results = dj.train(tiny("api-run", seeds="0,1", epochs=3, **{"data.validation": 0.25}))
  assert results.seeds == [0, 1] and os.path.isfile(os.path.join(results.workdir, "results.json"))
  matrix = results.matrix("class_il", seed=1)
  assert matrix.shape == (3, 2) and np.isnan(matrix[1, 1]) and not np.isnan(matrix[2]).any()
  summary = results.summary()["class_il"]["final_average"]
  assert summary["values"] == [results.metrics(s)["class_il"]["final_average"] for s in (0, 1)]
  valid = results.matrix("class_il", seed=1, split="validation")
  assert valid.shape == (3, 2) and np.isnan(valid[1, 1]) and not np.isnan(valid[2]).any()
  assert results.metrics(1, split="validation")["class_il"]["final_average"] == np.mean(valid[2])
  assert results.summary("validation")["class_il"]["final_average"]["values"][1] == np.mean(
    valid[2]
  )
  logits = results.predict(tx, seed=0)
  assert logits.shape == (len(tx), 4) and list(results.classes) == [2, 3, 0, 1]
  # The classes of the last task, as the user's labels, on their own test images.
  np.testing.assert_array_equal(
    results.classify(tx, seed=0), results.classes[np.argmax(logits, -1)]
  )
  last = np.isin(ty, [0, 1])
  assert np.mean(results.classify(tx[last], seed=0) == ty[last]) > 0.5
  with pytest.raises(InputError, match="pick one"):
    results.matrix()
  with pytest.raises(InputError, match=r"images must be \[N, 8, 8, 3\]"):
    results.predict(np.zeros((2, 9, 9), np.uint8), seed=0)


# --- slow tier ------------------------------------------------------------------------------

CLASS_IL = sorted(
  n for n, m in methods.REGISTRY.items() if "class-incremental" in m.kinds and "dgm" not in n
)


@pytest.mark.slow
@pytest.mark.parametrize("method", CLASS_IL)
def test_every_class_il_method_learns_arrays_above_chance(method):
  x, y = separable(24)
  tx, ty = separable(10, seed=1)
  dj.benchmarks.from_arrays((x, y), (tx, ty), [[0, 1], [2, 3]], name=f"api-{method}")
  overrides = {"slni.model": "mlp"} if method == "slni" else {}
  results = dj.train(tiny(f"api-{method}", method, epochs=4, lr=0.05, **overrides))
  # Chance is 25 %; the joint run trains once on everything.
  assert results.metrics()["class_il"]["final_average"] > 40.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dgm", "dgm_joint"])
def test_dgm_trains_on_arrays_under_its_protocol(method):
  """One class a task, grey 8x8 images resized to 32x32 with a hold-out; a split-protocol
  benchmark is refused in one line."""
  x, y = separable(20, classes=2)
  tx, ty = separable(6, classes=2, seed=1)
  dj.benchmarks.from_arrays((x, y), (tx, ty), [[1], [0]], name="api-dgm", protocol="dgm")
  keys = {"dgm.ngf": 2, "dgm.ndf": 4, "dgm.nz": 16, "batch_size": 4, "epochs": 2}
  keys.update({"train.progress": False, "train.eval_batch_size": 16})
  results = dj.train(dj.load_config("dgm_mnist", method=method, dataset="api-dgm", **keys))
  assert list(results.classes) == [1, 0]
  rows = 2 if method == "dgm_joint" else 3
  assert results.matrix().shape == (rows, 2) and not np.isnan(results.matrix()[-1]).any()
  assert results.predict(tx).shape == (len(tx), 2)  # resized to 32x32 as the training images
  dj.benchmarks.from_arrays((x, y), (tx, ty), [[1], [0]], name="api-split")
  with pytest.raises(ConfigError, match="protocol='dgm'") as err:
    dj.load_config("dgm_mnist", dataset="api-split")
  assert "\n" not in str(err.value)


@pytest.mark.slow
def test_the_example_runs_at_smoke_size(tmp_path):
  out = subprocess.run(
    [sys.executable, os.path.join(ROOT, "examples", "own_data.py"), "--smoke"],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "validation final average over seeds" in out.stdout and "predicted:" in out.stdout
