"""DGM's figures and their numbers: A_t, masked parameters, occupancy, size on disk, the PNGs."""

import json
import os

import jax
import numpy as np
import pytest

from dynamos_jax import analyze, trainer
from dynamos_jax import task_arrays as task_reports
from dynamos_jax.methods.dgm import plots as dgm_plots
from dynamos_jax.methods.dgm import summary as dgm_summary

# The analyze test reads conftest's dgm_two_task_run, trained once on the "dgm" worker.
pytestmark = pytest.mark.xdist_group("dgm")

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG


def test_average_accuracy_over_seen_classes():
  matrix = [[10.0, 0.0, 5.0], [100.0, None, None], [90.0, 80.0, None], [60.0, 70.0, 95.0]]
  assert dgm_plots.average_accuracy(matrix) == [100.0, 85.0, 75.0]


def test_masked_params_match_the_reference_count():
  """conv1-3 at the start: DGMw (24, 12, 6) -> 54 912; DGMa (80, 40, 20) -> 227 840."""
  counts = np.array([[24, 12, 6], [80, 40, 20]])
  assert list(dgm_plots.masked_params(counts, nz=128)) == [54_912, 227_840]
  # 128*24*16 = 49 152, 24*12*16 = 4 608, 12*6*16 = 1 152 (docs/dgm.md#parameter-counts).
  assert dgm_plots.masked_params(np.array([[24, 0, 0]]), 128)[0] == 49_152


def test_occupancy_new_reused_free():
  """Two tasks, one layer of 4 entries then 6 (grown): hand-counted shares."""
  b0 = np.array([1, 1, 0, 0, 0, 0], bool)
  b1 = np.array([0, 1, 1, 0, 1, 0], bool)
  e0 = np.array([1, 1, 1, 1, 0, 0], bool)
  e1 = np.ones(6, bool)
  occ = dgm_plots.occupancy([[b0], [b1]], [[e0], [e1]])
  np.testing.assert_allclose(occ["new"][:, 0], [2 / 4, 2 / 6])
  np.testing.assert_allclose(occ["reused"][:, 0], [0.0, 1 / 6])
  np.testing.assert_allclose(occ["free"][:, 0], [2 / 4, 2 / 6])


def test_generator_size_on_disk(tmp_path):
  weights = {"w1": np.zeros((128, 24, 4, 4)), "head0": np.zeros((6, 1, 4, 4))}
  sparse = np.zeros((128, 24, 4, 4), bool)
  sparse.flat[::10] = True
  dense = np.ones((128, 24, 4, 4), bool)
  few = dgm_plots.generator_size(tmp_path / "a", weights, {"t0.w1": sparse})
  many = dgm_plots.generator_size(tmp_path / "b", weights, {"t0.w1": dense})
  n = 128 * 24 * 16
  assert few["weights"] >= 4 * (n + 96) and few["weights"] < 4 * (n + 96) + 2000
  assert few["mask_ones"] == len(range(0, n, 10)) and many["mask_ones"] == n
  # Sparse: 4 bytes per stored one (+ the npz headers).
  assert 4 * few["mask_ones"] <= few["masks"] < 4 * few["mask_ones"] + 1000
  assert 4 * n <= many["masks"] < 4 * n + 1000
  assert few["total"] == few["weights"] + few["masks"]


def test_figures_are_written(tmp_path):
  rng = np.random.default_rng(0)
  paths = [
    dgm_plots.at_curve(
      [100.0, 99.0, 97.5, 96.0, 95.0], tmp_path / "at.png", reference=dgm_plots.PAPER_MNIST
    ),
    dgm_plots.at_curve([100.0, 90.0], tmp_path / "at2.png", selected=[100.0, 95.0]),
    dgm_plots.sample_grid(
      rng.integers(0, 256, (2, 3, 32, 32, 1), np.uint8), tmp_path / "grid8.png"
    ),
    dgm_plots.sample_grid(rng.uniform(-1, 1, (3, 4, 32, 32, 1)), tmp_path / "grid.png"),
    dgm_plots.sample_grid(rng.uniform(-1, 1, (2, 3, 32, 32, 3)), tmp_path / "grid3.png"),
    dgm_plots.growth_curve(
      np.array([[24, 12, 6], [30, 20, 9], [36, 27, 12]]), tmp_path / "growth.png", nz=128
    ),
    dgm_plots.occupancy_bars(
      np.array([[0.5, 0.2, 0.1], [0.3, 0.1, 0.1]]),
      np.array([[0.0, 0.0, 0.0], [0.2, 0.1, 0.05]]),
      tmp_path / "occ.png",
    ),
  ]
  assert all(_is_png(p) for p in paths)


def test_sample_drift_since_each_class_was_learned():
  """Three tasks of 1-pixel "images": class 0 moves by 51 then 102 grey levels, class 1
  by 255; the newest class has no drift."""
  first = np.array([[[100]]], np.uint8)
  second = np.array([[[151]], [[0]]], np.uint8)
  third = np.array([[[202]], [[255]], [[9]]], np.uint8)
  drift = dgm_plots.sample_drift([first, second, third])
  np.testing.assert_allclose(drift[0], [0.0])
  np.testing.assert_allclose(drift[1], [51 / 255, 0.0])
  np.testing.assert_allclose(drift[2], [102 / 255, 1.0, 0.0])


# --- analyze on a real (tiny) DGM run ---------------------------------------------------


def test_analyze_a_dgm_run(dgm_two_task_run, tiny_data):
  results, _, workdir = dgm_two_task_run
  numbers = analyze.analyze(workdir)["dgm"]
  out = os.path.join(workdir, "analysis")
  for name in (
    "dgm_at.png",
    "dgm_growth.png",
    "dgm_occupancy.png",
    "dgm_samples_task1.png",
    "dgm_samples_task2.png",
  ):  # one sample grid per task, from the reports
    assert _is_png(os.path.join(out, name)), name
  reports = task_reports.load(workdir, 0)
  drift = dgm_plots.sample_drift([r["samples"] for r in reports])
  assert numbers["sample_drift"] == drift and drift[1][1] == 0.0
  # Class 0 after task 2 from the same noise as after task 1: a small change only
  # (soft-mask drift, docs/dgm.md#soft-masks-for-past-tasks), which a reader would see in
  # the grids' first rows.
  assert 0.0 <= drift[1][0] < 0.02
  assert "best_valid" not in numbers  # a selection=final run
  assert numbers["A_t"] == dgm_plots.average_accuracy(results["class_il"]["matrix"])
  assert numbers["finished_tasks"] == 2

  exp, state, _ = trainer.restore_run(workdir)
  learner, method = state.learner, exp.method
  counts = np.asarray(learner.counts)
  assert numbers["channels"] == counts[:3].tolist()  # the start, after task 1, after task 2
  assert numbers["channels"][0] == [8, 4, 2]  # 4 ngf, 2 ngf, ngf at the start
  assert numbers["masked_params"][0] == 16 * 8 * 16 + 8 * 4 * 16 + 4 * 2 * 16
  # Task 0 reserved what its embeddings at s_max keep (e >= 0) on its active weights.
  for l in range(3):
    inputs = (16, counts[0][0], counts[0][1])[l]
    emb = np.asarray(learner.past_emb[l][0])[:inputs, : counts[0][l]]
    assert numbers["occupancy"]["new"][0][l] == pytest.approx(np.mean(emb >= 0))
    assert numbers["occupancy"]["reused"][0][l] == 0.0
  occ = {k: np.asarray(v) for k, v in numbers["occupancy"].items()}
  # The method's counts, the same shares.
  for row in dgm_summary.mask_statistics(method, learner, 2):
    t, l = row["task"], row["layer"] - 1
    assert occ["new"][t][l] == pytest.approx(row["new"] / row["entries"])
    assert occ["reused"][t][l] == pytest.approx(row["reused"] / row["entries"])
    assert occ["free"][t][l] == pytest.approx(row["free_after"] / row["entries"])
  assert np.all(occ["new"] + occ["reused"] <= 1 + 1e-9) and np.all(occ["free"] >= 0)
  sizes, counted = numbers["size_bytes"], numbers["generator"]
  assert sizes["weights"] > 4 * numbers["masked_params"][-1] and sizes["masks"] > 0
  # The files hold what the method counts (float32 weights, int32 indices), plus npz headers.
  assert counted["weights_bytes"] <= sizes["weights"] < counted["weights_bytes"] + 8000
  assert counted["masks_sparse_bytes"] == 4 * sizes["mask_ones"] <= sizes["masks"]
  with open(os.path.join(out, "analysis.json")) as f:
    assert json.load(f)["dgm"]["size_bytes"] == sizes
  grid = dgm_plots.generated_grid(method, learner, 2, n=3)
  assert grid.shape == (2, 3, 32, 32, 1) and np.all(np.abs(grid) <= 1)
  # The grid's noise is fixed: the same images twice, and class 0 is what G makes of it.
  np.testing.assert_array_equal(grid, dgm_plots.generated_grid(method, learner, 2, n=3))
  z = jax.random.normal(jax.random.key(dgm_plots._GRID_KEY), (3, 16))
  z = z.at[:, :10].set(jax.nn.one_hot(np.zeros(3, int), 10))
  np.testing.assert_allclose(
    grid[0], np.asarray(dgm_summary.generate(method, learner, z, 0)), atol=1e-6
  )
