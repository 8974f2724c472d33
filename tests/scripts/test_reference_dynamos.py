"""reference/dynamos/refdata.py: what the authors' Dynamos run reads and writes (no torch)."""

import gzip
import os
import pickle

import numpy as np
from PIL import Image
import pytest

from dynamos_jax.data import mnist360, sources
from dynamos_jax.errors import DataError

from conftest import load_script


def _load(name, *parts):
  return load_script(name, "reference", "dynamos", *parts)


refdata = _load("reference_dynamos_refdata", "refdata.py")
pil_rotate = _load("reference_dynamos_pil_rotate", "stubs", "torchvision", "pil_rotate.py")
run_reference = _load("reference_dynamos_run_reference", "run_reference.py")


def _calls():
  """Their evaluate's calls for 3 tasks: (last, class-IL, task-IL) per call, in call order."""
  return [
    (False, [10, 20, 30], [50, 60, 70]),  # the untrained model, every task
    (False, [90], [95]),  # after task 0
    (True, [5], [55]),  # task 1 before training it
    (False, [80, 85], [96, 97]),
    (True, [1], [52]),
    (False, [70, 75, 99], [90, 92, 98]),
  ]


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
  log.add(
    2, 1, "main", {"CE_curr": 1.0, "Rwd_curr": -3.0, "Total_loss": 2.0, "Prototype_loss": 0.6}
  )
  log.add(
    3,
    1,
    "main",
    {"CE_curr": 3.0, "Rwd_curr": -5.0, "Total_loss": 6.0, "CE_buff": 0.5, "Logits_buff": 0.25},
  )
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
  data = sources.ArrayDataset(
    "mnist", images, np.zeros(2, np.int32), images[:1], np.zeros(1, np.int32), 10
  )
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


# ------------------------------------------------------------ MNIST-360 (stub rotate)


def _rgb(h, w, seed=0):
  """An asymmetric RGB image, every byte in 1..255 (so black in the output means fill)."""
  return np.random.default_rng(seed).integers(1, 256, (h, w, 3), dtype=np.uint8)


def _rotated(array, angle):
  return np.asarray(pil_rotate.rotate(Image.fromarray(array, mode="RGB"), angle))


def test_stub_rotate_90_is_counter_clockwise_rot90_on_both_pil_paths():
  a = _rgb(6, 6)
  # np.rot90 (k=1) moves the top-right corner to the top-left: counter-clockwise.
  assert np.array_equal(np.rot90(np.array([[1, 2], [3, 4]])), [[2, 4], [1, 3]])
  ccw = np.rot90(a, 1, axes=(0, 1))
  assert np.array_equal(_rotated(a, 90), ccw)  # PIL's transpose shortcut (square image)
  # Just off 90 degrees PIL takes its affine map instead: on an even-sized image the
  # pixel centres map onto pixel centres, so nearest neighbour gives rot90 again.
  assert np.array_equal(_rotated(a, 90.00001), ccw)
  assert np.array_equal(_rotated(a, 450.0), ccw)  # angles are taken mod 360
  assert np.array_equal(_rotated(a, 270), np.rot90(a, -1, axes=(0, 1)))
  assert np.array_equal(_rotated(a, 180.0), a[::-1, ::-1])
  assert np.array_equal(_rotated(a, 0.0), a)


def test_stub_rotate_45_nearest_neighbour_on_known_pixels():
  a = _rgb(8, 8, seed=1)
  out = _rotated(a, 45.0)
  # Output pixel (row 1, col 4): centre (x, y) = (4.5, 1.5), offset from the image
  # centre (4, 4) is (0.5, -2.5). Rotating back by 45 degrees (y points down):
  # source offset = (c*0.5 - s*(-2.5), s*0.5 + c*(-2.5)) = (2.12, -1.41) with
  # c = s = 0.7071, so the source point (6.12, 2.59) lies in pixel (row 2, col 6).
  assert np.array_equal(out[1, 4], a[2, 6])
  # Output (0, 0): offset (-3.5, -3.5) -> source offset (0, -4.95), above the image:
  # black fill in every band.
  assert np.array_equal(out[0, 0], [0, 0, 0])
  # The centre pixel (row 4, col 4): offset (0.5, 0.5) -> (0, 0.71): source (4, 4.71).
  assert np.array_equal(out[4, 4], a[4, 4])


def test_stub_rotate_equals_pils_fixed_point_map_recomputed_in_numpy():
  # dynamos_jax.data.mnist360.rotation_params is PIL's 16.16 fixed-point map; the
  # gather below applies it independently of PIL, on MNIST's shape and on the
  # authors' start angles (digit 0 at -60 = 300 degrees) and arbitrary ones.
  a = _rgb(28, 28, seed=2)
  h, w = a.shape[:2]
  y, x = np.mgrid[0:h, 0:w]
  for angle in (300.0, 37.3, 123.456, 359.99, 1.0 * 360 / 5923):
    a0, a1, a2, a3, a4, a5 = (int(v) for v in mnist360.rotation_params(np.float64(angle), h, w))
    sx, sy = (a2 + a0 * x + a1 * y) >> 16, (a5 + a3 * x + a4 * y) >> 16
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    expected = np.where(inside[..., None], a[np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)], 0)
    assert np.array_equal(_rotated(a, angle), expected), angle


def test_stub_rotate_grey_image_and_what_it_refuses():
  grey = np.arange(16, dtype=np.uint8).reshape(4, 4) + 1
  out = np.asarray(pil_rotate.rotate(Image.fromarray(grey, mode="L"), 90))
  assert np.array_equal(out, np.rot90(grey))
  img = Image.fromarray(_rgb(4, 4), mode="RGB")
  with pytest.raises(RuntimeError, match="PIL images only"):
    pil_rotate.rotate(np.zeros((4, 4, 3), np.uint8), 10.0)
  for kwargs in ({"expand": True}, {"center": [1, 1]}, {"fill": 5}, {"interpolation": "bilinear"}):
    with pytest.raises(RuntimeError, match="only the defaults"):
      pil_rotate.rotate(img, 10.0, **kwargs)
  with pytest.raises(TypeError):
    pil_rotate.rotate(img, "10")


def test_gcl_record_shapes_our_results_and_checks_per_class_counts():
  # Per class: 3 / 4, 0 / 2, 5 / 5, none drawn. Pooled: 8 / 11.
  rec = refdata.gcl_record(100 * 8 / 11, [3, 0, 5, 0], [4, 2, 5, 0])
  assert rec["gcl"] == {"accuracy": pytest.approx(72.7272727)}
  assert rec["metrics"] == {"gcl": rec["gcl"]}
  per = rec["gcl_per_class"]
  assert per["accuracy"] == [75.0, 0.0, 100.0, None]
  assert per["correct"] == [3, 0, 5, 0] and per["total"] == [4, 2, 5, 0]
  assert per["matches_accuracy"] is True
  # An accuracy their counts do not reproduce is flagged, not hidden.
  assert (
    refdata.gcl_record(70.0, [3, 0, 5], [4, 2, 5])["gcl_per_class"]["matches_accuracy"] is False
  )
  with pytest.raises(ValueError):
    refdata.gcl_record(50.0, [3, 1], [2, 1])  # right more often than drawn
  with pytest.raises(ValueError):
    refdata.gcl_record(50.0, [1], [2, 2])


def test_gcl_seed_table_mean_and_spread_by_hand():
  theirs = [
    {"seed": s, **refdata.gcl_record(100 * c / 4, [c, 0], [4, 0])}
    for s, c in ((0, 1), (1, 2), (2, 3))
  ]  # 25, 50, 75
  ours = {"seed": 7, "gcl": {"accuracy": 40.0}, "metrics": {"gcl": {"accuracy": 40.0}}}
  lines = refdata.gcl_seed_table(theirs).splitlines()
  assert lines[0].split() == ["seed", "gcl", "c0", "c1"]
  assert lines[2].split() == ["1", "50.00", "50.0", "-"]
  # Mean 50, std (ddof 1) sqrt((25^2 + 0 + 25^2) / 2) = 25.
  assert lines[-1] == "3 seeds: GCL 50.00 +- 25.00 (std over seeds, ddof 1)"
  mixed = refdata.gcl_seed_table([ours, theirs[0]]).splitlines()
  assert mixed[1].split() == ["7", "40.00", "-", "-"]  # ours writes no per-class counts
  assert "GCL 32.50 +- 10.61" in mixed[-1]


def test_train_arguments_take_each_datasets_best_args_rows(tmp_path, capsys):
  ref = tmp_path / "ref"
  ref.mkdir()
  (ref / "main_policy.py").write_text("")
  base = ["train", f"--ref={ref}", f"--workdir={tmp_path / 'w'}"]
  args = run_reference.parse(base + ["--dataset=mnist-360", "--buffer_size=100", "--max_steps=5"])
  assert (args.dataset, args.buffer_size, args.max_steps) == ("mnist-360", 100, 5)
  assert run_reference.parse(base).dataset == "seq-mnist"  # the default stays Seq-MNIST 500
  for bad in (
    ["--dataset=mnist-360", "--buffer_size=1000"],  # not a mnist-360 row
    ["--buffer_size=100"],  # not a seq-mnist row
    ["--max_steps=5"],  # seq-mnist caps per task
    ["--dataset=mnist-360", "--max_steps_per_task=5"],
  ):
    with pytest.raises(SystemExit) as e:
      run_reference.parse(base + bad)
    assert e.value.code == 2
  assert "error: --buffer_size=1000" in capsys.readouterr().err


def test_bn_draws_one_generator_distinct_filled_slots():
  draws = refdata.bn_draws(500)
  assert len(draws) == 100 and all(len(d) == 32 for d in draws)
  # np.random.default_rng(0).choice(500, 32, replace=False), twice from one generator
  # (the rule of the diagnostic on our final states): the opening slots of draws 1 and 2.
  assert draws[0][:8].tolist() == [456, 299, 135, 35, 7, 306, 272, 127]
  assert draws[1][:8].tolist() == [352, 147, 162, 193, 341, 451, 273, 182]
  assert refdata.bn_draws(100, batches=1)[0][:5].tolist() == [82, 44, 24, 5, 1]
  for d in draws:
    assert len(set(d.tolist())) == 32 and 0 <= d.min() and d.max() < 500
  # Exactly as many filled slots as a draw takes: every draw is a permutation of them.
  assert all(sorted(d.tolist()) == list(range(32)) for d in refdata.bn_draws(32, batches=3))
  with pytest.raises(ValueError):
    refdata.bn_draws(31)  # without replacement, 32 of 31 slots cannot be drawn


def test_bn_from_buffer_record_by_hand():
  evaluated = refdata.gcl_record(100 * 8 / 11, [3, 0, 5, 0], [4, 2, 5, 0])
  reestimated = refdata.gcl_record(100 * 6 / 11, [2, 1, 3, 0], [4, 2, 5, 0])
  rec = refdata.bn_from_buffer_record(evaluated, evaluated, reestimated, seconds=1.5)
  assert rec["accuracy"] == pytest.approx(100 * 6 / 11)
  assert rec["delta"] == pytest.approx(-100 * 2 / 11)
  assert rec["per_class"]["accuracy"] == [50.0, 50.0, 60.0, None]
  # Per class, points: 50 - 75, 50 - 0, 60 - 100, no draws.
  assert rec["per_class_delta"] == [-25.0, 50.0, -40.0, None]
  assert rec["replay_matches"] is True and rec["seconds"] == 1.5
  # A replay of their evaluation that does not give their counts again is flagged.
  other = refdata.gcl_record(100 * 8 / 11, [4, 0, 4, 0], [4, 2, 5, 0])
  assert refdata.bn_from_buffer_record(evaluated, other, reestimated)["replay_matches"] is False


def test_gcl_seed_table_shows_bn_from_the_buffer_where_recorded():
  records = []
  for seed, c, b in ((0, 1, 2), (1, 3, 3)):  # GCL 25 / 75, with BN from the buffer 50 / 75
    rec = {"seed": seed, **refdata.gcl_record(100 * c / 4, [c], [4])}
    rec["gcl_bn_from_buffer"] = {"accuracy": 100 * b / 4}
    records.append(rec)
  lines = refdata.gcl_seed_table(records).splitlines()
  assert lines[0].split() == ["seed", "gcl", "bn", "c0"]
  assert lines[1].split() == ["0", "25.00", "50.00", "25.0"]
  # Mean 62.5, std (ddof 1) sqrt(2 * 12.5^2) = 17.68.
  assert lines[-1] == "2 seeds: GCL with BN from the buffer 62.50 +- 17.68"
  assert lines[-2].startswith("2 seeds: GCL 50.00 +- 35.36")


def test_bn_from_buffer_is_for_mnist_360(tmp_path, capsys):
  ref = tmp_path / "ref"
  ref.mkdir()
  (ref / "main_policy.py").write_text("")
  base = ["train", f"--ref={ref}", f"--workdir={tmp_path / 'w'}"]
  assert (
    run_reference.parse(base + ["--dataset=mnist-360", "--buffer_size=100"]).bn_from_buffer is False
  )
  assert (
    run_reference.parse(
      base + ["--dataset=mnist-360", "--buffer_size=500", "--bn_from_buffer"]
    ).bn_from_buffer
    is True
  )
  with pytest.raises(SystemExit) as e:
    run_reference.parse(base + ["--bn_from_buffer"])
  assert e.value.code == 2 and "--bn_from_buffer is for mnist-360" in capsys.readouterr().err
