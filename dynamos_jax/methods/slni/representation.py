"""What SLNI's users look at in a hidden layer: sparsity and overlap
(docs/slni.md#hidden-layer-statistics).

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
  """[T, T] Jaccard index |A_s & A_t| / |A_s | A_t| of the tasks' ever-active units (1 if
  both are empty)."""
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


HISTOGRAM_BINS = 30


def layer_report(acts: list[np.ndarray]) -> dict[str, np.ndarray]:
  """One hidden layer after a task, from its activations on each seen task's test images.

  Args:
    acts: per seen task s (in order), the layer's post-activation values [N_s, n].

  Returns:
    active_per_example [T]; ever_active bool [T, n]; unit_rates [T, n];
    overlap [T, T] (Jaccard of ``ever_active``); correlation [n, n] on the
    last task's images; hist [T, B] counts of the positive values over the
    edges hist_edges [B + 1] (shared by the tasks: 0 to the largest value).
  """
  sets = np.stack([ever_active(a) for a in acts])
  top = max(float(np.max(a)) for a in acts)
  edges = np.linspace(0.0, top if top > 0 else 1.0, HISTOGRAM_BINS + 1)
  return {
    "active_per_example": np.array([active_per_example(a) for a in acts]),
    "ever_active": sets,
    "unit_rates": np.stack([unit_rates(a) for a in acts]),
    "overlap": overlap(list(sets)),
    "correlation": correlation(acts[-1]),
    "hist": np.stack([np.histogram(np.asarray(a)[np.asarray(a) > 0], edges)[0] for a in acts]),
    "hist_edges": edges,
  }
