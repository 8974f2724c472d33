"""benchmarks/reference_dynamos/refdata.py: what the authors' Dynamos run reads and writes (no torch)."""

import gzip
import importlib.util
import os
import pickle

import numpy as np
import pytest

from dynamos_jax.data import sources
from dynamos_jax.errors import DataError

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks",
                     "reference_dynamos", "refdata.py")
# Loaded by path: benchmarks/reference_slni has a torch module of the same name.
_SPEC = importlib.util.spec_from_file_location("reference_dynamos_refdata", _PATH)
refdata = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(refdata)


def _calls():
  """Their evaluate's calls for 3 tasks: (last, class-IL, task-IL) per call, in call order."""
  return [(False, [10, 20, 30], [50, 60, 70]),  # the untrained model, every task
          (False, [90], [95]),  # after task 0
          (True, [5], [55]),  # task 1 before training it
          (False, [80, 85], [96, 97]),
          (True, [1], [52]),
          (False, [70, 75, 99], [90, 92, 98])]


def test_accuracy_record_matrix_before_and_metrics_by_hand():
  rec = refdata.accuracy_record(_calls(), 3)
  c = rec["class_il"]
  assert c["matrix"] == [[10, 20, 30], [90, None, None], [80, 85, None], [70, 75, 99]]
  assert c["before"] == [10, 5, 1]
  assert rec["task_il"]["before"] == [50, 55, 52]
  assert rec["task_il"]["matrix"][2] == [96, 97, None]
  m = rec["metrics"]["class_il"]
  assert m["final_average"] == pytest.approx((70 + 75 + 99) / 3)
  # Forgetting: task 0 best 90 -> 70, task 1 best 85 -> 75: mean(20, 10).
  assert m["forgetting"] == pytest.approx(15.0)
  assert m["backward_transfer"] == pytest.approx(((70 - 90) + (75 - 85)) / 2)
  # FWT: before[j] - untrained[j] for j = 1, 2: (5 - 20, 1 - 30).
  assert m["forward_transfer"] == pytest.approx((-15 - 29) / 2)
  assert rec["metrics"]["task_il"]["forgetting"] == pytest.approx(((96 - 90) + (97 - 92)) / 2)


def test_accuracy_record_of_a_run_cut_short_and_out_of_order():
  rec = refdata.accuracy_record(_calls()[:3], 3)
  assert rec["class_il"]["matrix"] == [[10, 20, 30], [90, None, None]]
  assert rec["class_il"]["before"] == [10, 5]
  assert rec["metrics"]["class_il"] == {"final_average": 90.0}
  with pytest.raises(ValueError):  # no untrained-model evaluation first
    refdata.accuracy_record(_calls()[1:], 3)
  with pytest.raises(ValueError):  # after task 1 without its "before" evaluation
    refdata.accuracy_record(_calls()[:2] + _calls()[3:], 3)


def test_step_log_names_means_and_chunks():
  log = refdata.StepLog(every=2)
  log.add(1, 1, "warmup", {"Total_loss": 4.0, "train_accuracy": 0.5})
  # The phase changes: the warm-up chunk closes after one step.
  log.add(2, 1, "main", {"CE_curr": 1.0, "Rwd_curr": -3.0, "Total_loss": 2.0,
                         "Prototype_loss": 0.6})
  log.add(3, 1, "main", {"CE_curr": 3.0, "Rwd_curr": -5.0, "Total_loss": 6.0,
                         "CE_buff": 0.5, "Logits_buff": 0.25})
  log.add(4, 2, "main", {"CE_curr": 2.0, "Total_loss": 1.0})
  log.flush()
  first, second, third = log.entries
  assert first == {"step": 1, "task": 1, "phase": "warmup", "loss": 4.0, "train_accuracy": 0.5}
  assert second["step"] == 3 and second["task"] == 1
  assert second["ce"] == 2.0 and second["reinforce"] == -4.0 and second["loss"] == 4.0
  # A prototype term left out (fewer than 3 right) counts 0, as ours logs it.
  assert second["prototype"] == pytest.approx(0.3)
  # Replay terms: over the one step that replayed.
  assert second["replay_ce"] == 0.5 and second["mse_logits"] == 0.25
  assert second["replay_prototype"] == 0.0
  assert third["task"] == 2 and third["ce"] == 2.0 and "replay_ce" not in third


def _write_pkl(path, train, valid, test):
  """An mnist.pkl.gz of (images uint8 [N, 784], labels) triples, pixels stored as byte / 256."""
  with gzip.open(path, "wb") as f:
    pickle.dump(tuple((x.astype(np.float32) / 256, y) for x, y in (train, valid, test)), f)


def test_mnist_arrays_are_the_bytes_our_files_source_reads(tmp_path):
  rng = np.random.default_rng(0)
  parts = []
  for n in (6, 4, 5):
    x = rng.integers(0, 256, (n, 784)).astype(np.uint8)
    x[0, :3] = (0, 1, 255)  # the ends of the byte range survive the /256 round trip
    parts.append((x, rng.integers(0, 10, n)))
  path = os.path.join(tmp_path, "mnist.pkl.gz")
  _write_pkl(path, *parts)
  train_x, train_y, test_x, test_y = refdata.mnist_arrays("files", path)
  # Train is the pickle's train then valid split, as torchvision's 60,000.
  expected = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 28, 28)
  assert train_x.dtype == np.uint8 and np.array_equal(train_x, expected)
  assert train_y.dtype == np.int64
  assert np.array_equal(train_y, np.concatenate([parts[0][1], parts[1][1]]))
  assert np.array_equal(test_x, parts[2][0].reshape(-1, 28, 28))
  assert np.array_equal(test_y, parts[2][1])
  ours = sources.load_dataset("mnist", "files", path)
  assert np.array_equal(np.repeat(train_x[..., None], 3, -1), ours.train_images)


def test_mnist_arrays_refuses_colour_images(monkeypatch):
  images = np.zeros((2, 28, 28, 3), np.uint8)
  images[1, 0, 0, 2] = 7
  data = sources.ArrayDataset("mnist", images, np.zeros(2, np.int32), images[:1],
                              np.zeros(1, np.int32), 10)
  monkeypatch.setattr(sources, "load_dataset", lambda *a: data)
  with pytest.raises(DataError, match="channels differ"):
    refdata.mnist_arrays("files", "unused")


def test_seed_table_row_means_and_spread_by_hand():
  first = {"seed": 3, **refdata.accuracy_record(_calls(), 3)}
  calls = _calls()
  calls[-1] = (False, [60, 75, 99], [90, 92, 94])  # final class-IL 78, task-IL 92
  second = {"seed": 4, **refdata.accuracy_record(calls, 3)}
  lines = refdata.seed_table([first, second]).splitlines()
  assert lines[0].split() == ["seed", "cil@1", "cil@2", "cil@3", "til", "forget"]
  # Row means: 90; (80 + 85) / 2; (70 + 75 + 99) / 3. Task-IL final (90 + 92 + 98) / 3.
  assert lines[1].split() == ["3", "90.00", "82.50", "81.33", "93.33", "15.00"]
  # Forgetting of seed 4: (90 - 60 + 85 - 75) / 2.
  assert lines[2].split()[0] == "4" and lines[2].split()[-1] == "20.00"
  # Class-IL finals 81.33 and 78: mean 79.67, std (ddof 1) |81.33 - 78| / sqrt(2) = 2.36.
  assert "class-IL 79.67 +- 2.36" in lines[3] and lines[3].startswith("2 seeds")
