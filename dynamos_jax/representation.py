"""What SLNI's users look at in a hidden layer (slni-spec 14): sparsity and overlap.

Pure NumPy over a layer's post-activation values ``acts`` [N, n] on the test
images of each task: the fraction of units active per example, the units ever
active on a task, the overlap of those sets between tasks (Jaccard), and the
layer's uncentred correlation matrix (the quantity SNI/SLNI decorrelate).
"""

import numpy as np


def active_per_example(acts: np.ndarray) -> float:
  """Mean over examples of the fraction of units with a positive value."""
  return float(np.mean(np.asarray(acts) > 0))


def unit_rates(acts: np.ndarray) -> np.ndarray:
  """[n]: the fraction of examples on which each unit is positive."""
  return np.mean(np.asarray(acts) > 0, axis=0)


def ever_active(acts: np.ndarray) -> np.ndarray:
  """bool [n]: the units positive on at least one example."""
  return np.any(np.asarray(acts) > 0, axis=0)


def overlap(sets: list[np.ndarray]) -> np.ndarray:
  """[T, T] Jaccard index |A_s & A_t| / |A_s | A_t| of the tasks' ever-active units (1 if both empty)."""
  t = len(sets)
  out = np.ones((t, t))
  for i in range(t):
    for j in range(t):
      union = np.sum(sets[i] | sets[j])
      out[i, j] = np.sum(sets[i] & sets[j]) / union if union else 1.0
  return out


def correlation(acts: np.ndarray) -> np.ndarray:
  """[n, n] C = H^T H / N (no centring, as the regularisers)."""
  h = np.asarray(acts, np.float64)
  return h.T @ h / max(len(h), 1)
