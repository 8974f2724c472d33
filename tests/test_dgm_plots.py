"""DGM's figures and their numbers: A_t, masked parameters, occupancy, size on disk, the PNGs."""

import numpy as np

from dynamos_jax import dgm_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG


def test_average_accuracy_over_seen_classes():
  matrix = [[10.0, 0.0, 5.0], [100.0, None, None], [90.0, 80.0, None], [60.0, 70.0, 95.0]]
  assert dgm_plots.average_accuracy(matrix) == [100.0, 85.0, 75.0]


def test_masked_params_match_spec_2_3():
  """conv1-3 at the start: DGMw (24, 12, 6) -> 54 912; DGMa (80, 40, 20) -> 227 840."""
  counts = np.array([[24, 12, 6], [80, 40, 20]])
  assert list(dgm_plots.masked_params(counts, nz=128)) == [54_912, 227_840]
  # 128*24*16 = 49 152, 24*12*16 = 4 608, 12*6*16 = 1 152 (spec 2.3's parts).
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
      dgm_plots.at_curve([100.0, 99.0, 97.5, 96.0, 95.0], tmp_path / "at.png",
                         reference=dgm_plots.PAPER_MNIST),
      dgm_plots.sample_grid(rng.uniform(-1, 1, (3, 4, 32, 32, 1)), tmp_path / "grid.png"),
      dgm_plots.sample_grid(rng.uniform(-1, 1, (2, 3, 32, 32, 3)), tmp_path / "grid3.png"),
      dgm_plots.growth_curve(np.array([[24, 12, 6], [30, 20, 9], [36, 27, 12]]),
                             tmp_path / "growth.png", nz=128),
      dgm_plots.occupancy_bars(np.array([[0.5, 0.2, 0.1], [0.3, 0.1, 0.1]]),
                               np.array([[0.0, 0.0, 0.0], [0.2, 0.1, 0.05]]),
                               tmp_path / "occ.png"),
  ]
  assert all(_is_png(p) for p in paths)
