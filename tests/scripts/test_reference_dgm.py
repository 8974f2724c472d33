"""reference/dgm: what the authors' DGM run reads from us and writes back (no torch)."""

import jax
import ml_collections
import numpy as np
import pytest

from dynamos_jax import benchmarks
from dynamos_jax.data import sources
from dynamos_jax.methods.dgm.discriminator import to_unit

from conftest import load_script

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("reference_dgm")


def _load(name, *parts):
  return load_script(name, "reference", "dgm", *parts)


refdata = _load("reference_dgm_refdata", "refdata.py")
tv_stub = _load("reference_dgm_torchvision", "stubs", "torchvision", "__init__.py")
tf_stub = _load("reference_dgm_tensorflow", "stubs", "tensorflow", "__init__.py")

PER_CLASS, PER_CLASS_TEST, BATCH = 40, 7, 8  # 34 train / 6 held out a class: 5 batches, last 2


def _benchmark():
  """A real dgm-mnist benchmark (hold-out, 32x32 resize, fixed order) over synthetic digits."""
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10, dtype=np.int32), PER_CLASS)
  test_labels = np.repeat(np.arange(10, dtype=np.int32), PER_CLASS_TEST)
  grey = lambda n: np.repeat(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), 3, -1)
  host = sources.ArrayDataset(
    "mnist", grey(len(labels)), labels, grey(len(test_labels)), test_labels, 10
  )
  data = benchmarks.DeviceData(host, host.train_images, host.train_labels, host.test_images)
  config = ml_collections.ConfigDict({"dataset": "dgm-mnist", "batch_size": BATCH, "epochs": 2})
  return benchmarks.build(config, data, jax.random.key(0), joint=False)


@pytest.fixture(scope="module")
def bench_and_tasks():
  bench = _benchmark()
  return bench, refdata.task_arrays(bench, to_unit)


def test_task_arrays_are_the_images_our_epochs_batch(bench_and_tasks):
  bench, tasks = bench_and_tasks
  assert len(tasks) == 10
  unit = jax.jit(to_unit)
  images = np.asarray(bench.data.host.train_images)
  for t in (0, 9):
    entry = tasks[t]
    assert entry["train_x"].shape == (34, 1, 32, 32) and entry["train_x"].dtype == np.float32
    assert entry["valid_x"].shape == (6, 1, 32, 32) and entry["test_x"].shape == (7, 1, 32, 32)
    assert all(
      np.all(entry[f"{s}_y"] == t) and entry[f"{s}_y"].dtype == np.int64 for s in refdata.SPLITS
    )
    slices = refdata.their_batches(len(entry["train_x"]), BATCH)
    assert slices == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 34)]
    # Every epoch of ours (fixed order) against their loop's slices of train_x, in order.
    for epoch in (0, 1):
      ours = bench.epoch_data(t, epoch)
      order, mask = np.asarray(ours.order), np.asarray(ours.mask)
      assert [int(m.sum()) for m in mask[: len(slices)]] == [b - a for a, b in slices]
      assert not mask[len(slices) :].any()  # rows padding the epoch to the longest task's
      for row, (a, b) in enumerate(slices):
        step_input = np.asarray(unit(images[order[row][mask[row]]])).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(step_input, entry["train_x"][a:b])
    # The last, short batch as the step gathers it (EpochData.batch): 2 real rows.
    batch = ours.batch(len(slices) - 1)
    real = np.asarray(batch.mask)
    np.testing.assert_array_equal(
      np.asarray(unit(batch.images))[real].transpose(0, 3, 1, 2), entry["train_x"][32:]
    )
    # Held-out and test images: the benchmark's own sets, as our selection and evaluation.
    valid_x, valid_y = bench.validation_set()
    rows = np.asarray(valid_y) == t
    np.testing.assert_array_equal(
      np.asarray(unit(valid_x[rows])).transpose(0, 3, 1, 2), entry["valid_x"]
    )
    test_x, test_y = bench.task_test_set(t)
    np.testing.assert_array_equal(np.asarray(unit(test_x)).transpose(0, 3, 1, 2), entry["test_x"])


def test_task_arrays_scale_bytes_to_minus_one_one(bench_and_tasks):
  bench, tasks = bench_and_tasks
  first = bench.task_indices[2][0]
  byte = np.asarray(bench.data.host.train_images)[first, 5, 7, 0]  # 32x32 uint8 after resize
  assert tasks[2]["train_x"][0, 0, 5, 7] == pytest.approx(byte / 127.5 - 1.0, abs=1e-6)
  x = np.asarray(to_unit(np.array([[[[0], [51], [255]]]], np.uint8)))
  np.testing.assert_allclose(x.ravel(), [-1.0, -0.6, 1.0], atol=1e-6)


def test_save_and_load_round_trip(tmp_path, bench_and_tasks):
  _, tasks = bench_and_tasks
  path = str(tmp_path / "d.npz")
  refdata.save(path, tasks, {"num_tasks": 10, "batch_size": BATCH, "epochs": 2})
  back, meta = refdata.load(path)
  assert meta["batch_size"] == BATCH and len(back) == 10
  for a, b in zip(tasks, back):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_their_batches_keep_the_last_partial_batch():
  assert refdata.their_batches(340, 32)[-2:] == [(288, 320), (320, 340)]
  assert len(refdata.their_batches(340, 32)) == 11
  assert refdata.their_batches(64, 32) == [(0, 32), (32, 64)]


def test_batch_mean_accuracy_weighs_a_short_batch_as_a_full_one():
  correct = np.ones(33, bool)
  correct[-1] = False
  assert refdata.batch_mean_accuracy(correct, 32) == pytest.approx(50.0)
  assert refdata.batch_mean_accuracy(np.ones(64, bool), 32) == 100.0


def test_task_record_counts_what_d_predicts():
  preds = [np.array([1, 1, 0, 1]), np.array([1, 1, 1, 1])]  # class 0 mostly called 1
  rec = refdata.task_record(1, [25.0, 100.0], preds, 50.0, 3.0)
  assert rec["class_il"] == [25.0, 100.0] and rec["A"] == pytest.approx(62.5)
  assert rec["predicted_counts"] == [[1, 3], [0, 4]]
  assert rec["A_logged"] == pytest.approx(62.5) and rec["best_selected_A"] == 50.0
  with pytest.raises(ValueError):
    refdata.task_record(2, [25.0, 100.0], preds, 50.0, 3.0)


def test_save_image_grid_layout():
  batch = np.arange(3 * 4, dtype=np.float32).reshape(3, 1, 2, 2)
  grid = tv_stub._grid(batch, nrow=2, padding=1)
  assert grid.shape == (1, 2 * 3 + 1, 2 * 3 + 1)  # 2 rows of 2, 1-pixel padding
  np.testing.assert_array_equal(grid[0, 1:3, 1:3], batch[0, 0])
  np.testing.assert_array_equal(grid[0, 1:3, 4:6], batch[1, 0])
  np.testing.assert_array_equal(grid[0, 4:6, 1:3], batch[2, 0])
  assert grid[0, 4:6, 4:6].sum() == 0 and grid[0, 0].sum() == 0 and grid[0, 3].sum() == 0


def test_tensorflow_stub_records_their_loggers_scalars():
  # The calls their utils/logger.py makes (scalar_summary, histo_summary).
  writer = tf_stub.summary.FileWriter("logs/Acc. Task 1")
  before = len(tf_stub.SCALARS)
  writer.add_summary(
    tf_stub.Summary(
      value=[tf_stub.Summary.Value(tag="Accuracy_test", simple_value=np.float64(87.5))]
    ),
    40,
  )
  hist = tf_stub.HistogramProto()
  hist.bucket_limit.append(0.5)
  writer.add_summary(tf_stub.Summary(value=[tf_stub.Summary.Value(tag="h", histo=hist)]), 41)
  writer.flush()
  assert tf_stub.SCALARS[before:] == [("logs/Acc. Task 1", "Accuracy_test", 40, 87.5)]


def _run_reference():
  return _load("reference_dgm_run_reference", "run_reference.py")


def test_driver_pins_the_commit_blobs(tmp_path):
  run_reference = _run_reference()
  (tmp_path / "approaches").mkdir()
  (tmp_path / "approaches" / "DGMw.py").write_text("")
  changed = run_reference.changed_files(str(tmp_path))
  assert "approaches/DGMw.py" in changed and "networks/net_DGMw.py" in changed
  # git's blob id of the empty file
  assert (
    run_reference.git_blob_id(str(tmp_path / "approaches" / "DGMw.py"))
    == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
  )


def test_driver_pins_each_variants_files():
  run_reference = _run_reference()
  w, a = run_reference.VARIANT_BLOBS["w"], run_reference.VARIANT_BLOBS["a"]
  assert w is run_reference.BLOBS  # DGMw's check as it was
  # DGMa swaps in its approach, network and config; utils and run.py are the same files.
  assert set(w) - set(a) == {"approaches/DGMw.py", "networks/net_DGMw.py", "cfg/cfg_mnist_dgmw.yml"}
  assert set(a) - set(w) == {"approaches/DGMa.py", "networks/net_DGMa.py", "cfg/cfg_mnist_dgma.yml"}
  assert all(a[p] == w[p] for p in set(a) & set(w))
  for variant, (approach, network, cfg) in run_reference.VARIANTS.items():
    files = {approach.replace(".", "/") + ".py", network.replace(".", "/") + ".py", cfg}
    assert files <= set(run_reference.VARIANT_BLOBS[variant])


def test_driver_checks_only_the_variants_files(tmp_path):
  run_reference = _run_reference()
  blobs = run_reference.VARIANT_BLOBS["a"]
  # A tree with a changed DGMa.py and nothing else: each of DGMa's files is reported
  # (one differs, the rest are missing), none of DGMw's own.
  (tmp_path / "approaches").mkdir()
  (tmp_path / "approaches" / "DGMa.py").write_text("changed")
  changed = run_reference.changed_files(str(tmp_path), "a")
  assert set(changed) == set(blobs)
  assert "approaches/DGMw.py" not in changed


def _yml(path, **values):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))


@pytest.mark.parametrize("variant", ["w", "a"])
def test_their_config_takes_our_departures_for_both_variants(tmp_path, variant):
  run_reference = _run_reference()
  # Their two MNIST ymls differ in ngf, smax_g, lamb_G (and names, paths, device).
  ngf = {"w": 6, "a": 20}[variant]
  cfg_file = run_reference.VARIANTS[variant][2]
  _yml(tmp_path / cfg_file, batchSize=64, ndf=32, niter=101, ngf=ngf, manualSeed=0)
  meta = {"epochs": 20, "batch_size": 32, "ndf": 16}
  cfg = run_reference.their_config(str(tmp_path), variant, meta)
  assert (cfg["niter"], cfg["batchSize"], cfg["ndf"]) == (20, 32, 16)
  assert (cfg["ngf"], cfg["manualSeed"]) == (ngf, 0)  # the rest is the yml's
  cfg = run_reference.their_config(str(tmp_path), variant, meta, 3, 8, 4, seed=2)
  assert (cfg["niter"], cfg["batchSize"], cfg["ndf"], cfg["manualSeed"]) == (3, 8, 4, 2)


def test_histograms_of_near_constant_masks_bin_as_numpy_1_14():
  # DGMa's masks at s = 1e-5: float32 gates within 1e-7 of 0.5, which numpy 2.x
  # cannot cut into 1,000 float32 bins; their Logger's call, shimmed, goes through.
  import types

  run_reference = _run_reference()
  calls = []

  class Logger:
    def histo_summary(self, tag, values, step, bins=1000):
      calls.append(np.histogram(values, bins=bins)[0].sum())

  module = types.SimpleNamespace(Logger=Logger)
  masks = (0.5 + np.arange(80) * 1e-9).astype(np.float32)
  with pytest.raises(ValueError, match="Too many bins"):
    Logger().histo_summary("m", masks, 0)
  assert run_reference.numpy114_compat(module)
  module.Logger().histo_summary("m", masks, 0)
  assert calls == [80]


def test_dump_of_the_full_mnist_config_records_its_schedule(tmp_path, monkeypatch):
  dump_data = _load("reference_dgm_dump_data", "dump_data.py")
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(10, dtype=np.int32), 8)
  grey = lambda n: np.repeat(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), 3, -1)
  host = sources.ArrayDataset("mnist", grey(80), labels, grey(20), labels[::4], 10)
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: host)
  out = tmp_path / "dump.npz"
  assert dump_data.main(["--config=mnist", "--epochs=3", f"--out={out}"]) == 0
  _, meta = refdata.load(str(out))
  assert meta["config"] == "configs/dgm_mnist.py:dgmw"
  assert (meta["epochs"], meta["batch_size"], meta["ndf"]) == (3, 64, 32)
  assert meta["counts"]["test"] == [2] * 10
