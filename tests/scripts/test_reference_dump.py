"""reference/slni/dump_permutations.py: what it writes is what a run of the seed sees.

The authors' code permutes an image as ``img.view(-1)[perm]`` (a gather), so
the dumped rows must satisfy test_images.reshape(n, -1)[:, perm[t]] == the
benchmark's task-t test images; checked on a tiny fake mnist.pkl.gz.
"""

import gzip
import os
import pickle
import sys

import numpy as np

from dynamos_jax import experiment

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "reference", "slni"))
import dump_permutations  # noqa: E402

from configs import permuted_mnist  # noqa: E402


def _fake_pkl(path):
  rng = np.random.default_rng(3)
  splits = [(rng.integers(0, 256, size=(n, 784)), rng.integers(0, 10, size=n)) for n in (9, 3, 4)]
  with gzip.open(path, "wb") as f:
    pickle.dump(tuple((p.astype(np.float32) / 256, l) for p, l in splits), f)
  return splits


def test_dump_matches_the_runs_permuted_test_sets(tmp_path):
  (tx, ty), (vx, vy), (sx, sy) = _fake_pkl(tmp_path / "mnist.pkl.gz")
  out = tmp_path / "out"
  assert (
    dump_permutations.main(["--seeds=0,1", f"--path={tmp_path / 'mnist.pkl.gz'}", f"--out={out}"])
    == 0
  )
  data = np.load(out / "mnist_uint8.npz")
  np.testing.assert_array_equal(data["train_images"].reshape(12, 784), np.concatenate([tx, vx]))
  np.testing.assert_array_equal(data["train_labels"], np.concatenate([ty, vy]))
  np.testing.assert_array_equal(data["test_images"].reshape(4, 784), sx)
  perms = [np.load(out / f"permutations_seed{s}.npy") for s in (0, 1)]
  for p in perms:
    assert p.shape == (5, 784)
    np.testing.assert_array_equal(p[0], np.arange(784))
    for row in p:
      np.testing.assert_array_equal(np.sort(row), np.arange(784))
  assert not np.array_equal(perms[0][1], perms[1][1])
  cfg = permuted_mnist.get_config("mas128")
  cfg.data.source, cfg.data.path = "files", str(tmp_path / "mnist.pkl.gz")
  bench = experiment.Experiment(cfg, 1).benchmark
  for t in range(5):
    images, labels = bench.task_test_set(t)
    np.testing.assert_array_equal(np.asarray(images)[..., 0].reshape(4, 784), sx[:, perms[1][t]])
    np.testing.assert_array_equal(labels, sy)


def test_bad_seeds_exit_2(tmp_path, capsys):
  assert dump_permutations.main(["--seeds=0,a", "--path=x", f"--out={tmp_path}"]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
