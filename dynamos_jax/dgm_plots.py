"""What a user of DGM looks at (dgm-spec 16): samples, growth, mask occupancy, A_t, size on disk.

The numbers come from a DGM run's checkpoint (``analyze_dgm``, called by
``python -m dynamos_jax.analyze --workdir=DIR`` for a ``dgm`` run) and its
accuracy matrix; every figure function takes plain arrays, writes a PNG
(matplotlib's Agg canvas, as ``plots.py``) and returns its path.

- A grid of generated images for every seen class: fixed noise (the same z
  for every class, its one-hot prefix set to the class), each class through
  its own task's sub-network, BN and head at s = s_max, BN in eval mode.
- The growth curve: the active output channels of conv1-3 after each task
  against the linear worst case (the start width plus one start width per
  expansion, spec 6), and the masked parameters.
- Mask occupancy per layer and task (paper Fig. 3a): of each task's binary
  mask, the share of the layer that it newly reserves and the share it reuses
  from earlier tasks, and what is left free.
- The A_t curve: the mean of the class-IL row after task t over the classes
  seen (the paper's A5 and A10 marked for MNIST).
- The generator's size on disk: its weights (float32) and the binary masks
  of the tasks stored sparse (the int32 flat indices of their ones), written
  as .npz files whose sizes are reported (paper Table 4).
"""

import os
from collections.abc import Sequence

import numpy as np

from dynamos_jax import plots

# The paper's Table 1 (A5, A10) on MNIST, drawn next to a run's curve.
PAPER_MNIST = {"DGMw": {5: 98.75, 10: 96.46}, "DGMa": {5: 99.17, 10: 97.92},
               "JT": {5: 97.66, 10: 98.10}}
LAYERS = ("conv1", "conv2", "conv3")


def average_accuracy(matrix: Sequence[Sequence[float | None]]) -> list[float]:
  """A_t for t = 1..T: the mean of row t (after task t) over its seen (non-None) entries."""
  return [float(np.mean([v for v in row if v is not None])) for row in matrix[1:]]


def at_curve(values: Sequence[float], path, reference: dict | None = None,
             title: str = "A_t: average accuracy over the classes seen") -> str:
  """A_t after each task; ``reference``: {name: {task: value}} drawn as markers."""
  t = np.arange(1, len(values) + 1)
  ax = plots._figure(5.5, 3.4).add_subplot()
  ax.plot(t, values, "o-", color="tab:blue", label="this run")
  for (name, points), marker in zip((reference or {}).items(), "s^dv"):
    xs = [k for k in sorted(points) if k <= len(values)]
    ax.plot(xs, [points[k] for k in xs], marker, linestyle="none", label=f"paper {name}")
  ax.set_xticks(t)
  ax.set_xlabel("after task t")
  ax.set_ylabel("A_t (%)")
  ax.set_ylim(max(0.0, min(values) - 5.0), 100.5)
  ax.legend(loc="lower left", fontsize=8)
  ax.set_title(title)
  return plots._save(ax.figure, path)


def sample_grid(images: np.ndarray, path, class_names: Sequence | None = None,
                title: str = "Generated samples (fixed noise)") -> str:
  """images float [K, n, H, W, C] in [-1, 1] (K classes, n samples each): one row per class."""
  k, n = images.shape[:2]
  pixels = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
  names = plots._labels(class_names, k, "class {}")
  fig = plots._figure(0.6 * n + 1.0, 0.6 * k + 0.6)
  axes = fig.subplots(k, n, squeeze=False)
  for i in range(k):
    for j in range(n):
      ax = axes[i, j]
      image = pixels[i, j]
      if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
      else:
        ax.imshow(image, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if j == 0:
        ax.set_ylabel(names[i], rotation=0, ha="right", va="center", fontsize=8)
  fig.suptitle(title, fontsize=10)
  return plots._save(fig, path)


def masked_params(counts: np.ndarray, nz: int, kernel: int = 4) -> np.ndarray:
  """[rows] conv1-3 weights for output channels ``counts`` [rows, 3] (inputs nz, C_1, C_2)."""
  counts = np.asarray(counts, np.int64)
  inputs = np.stack([np.full(len(counts), nz), counts[:, 0], counts[:, 1]], axis=1)
  return (inputs * counts * kernel * kernel).sum(axis=1)


def growth_curve(counts: np.ndarray, path, nz: int, title: str = "Generator growth") -> str:
  """counts int [T + 1, 3]: conv1-3 output channels at the start (row 0) and after each task.

  Left: channels per layer, with the linear worst case start x (1 + t) dashed
  (each expansion adds at most about the start width, spec 6). Right: the
  masked parameters, with the worst case of those widths.
  """
  counts = np.asarray(counts)
  t = np.arange(len(counts))
  fig = plots._figure(9.0, 3.4)
  left, right = fig.subplots(1, 2)
  for l, (name, color) in enumerate(zip(LAYERS, ("tab:blue", "tab:orange", "tab:green"))):
    left.plot(t, counts[:, l], "o-", color=color, label=name)
    left.plot(t, counts[0, l] * (1 + t), "--", color=color, alpha=0.5)
  left.set_xlabel("tasks learned")
  left.set_ylabel("output channels")
  left.legend(fontsize=8, title="dashed: linear worst case", title_fontsize=7)
  worst = masked_params(counts[0][None, :] * (1 + t)[:, None], nz)
  right.plot(t, masked_params(counts, nz), "o-", color="tab:purple", label="masked weights")
  right.plot(t, worst, "--", color="tab:purple", alpha=0.5, label="linear worst case widths")
  right.set_xlabel("tasks learned")
  right.set_ylabel("conv1-3 weights")
  right.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  return plots._save(fig, path)


def occupancy(binaries: Sequence[Sequence[np.ndarray]],
              exists: Sequence[Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
  """Each task's share of each layer: newly reserved, reused, and free after it.

  Args:
    binaries: [T][L] bool arrays, task t's binary mask b_l^t (one common
      shape per layer; False outside task t's sub-network).
    exists: [T][L] bool arrays of the same shapes: the entries that exist
      for task t (its capacity).

  Returns:
    new, reused, free: float [T, L], fractions of task t's capacity of layer
    l: ones of b^t not in M^{<t}, ones of b^t in M^{<t}, and entries in
    neither M^{<=t}.
  """
  tasks, layers = len(binaries), len(binaries[0])
  new, reused, free = (np.zeros((tasks, layers)) for _ in range(3))
  for l in range(layers):
    cum = np.zeros(np.shape(binaries[0][l]), bool)
    for t in range(tasks):
      b = np.asarray(binaries[t][l], bool)
      capacity = max(int(np.sum(exists[t][l])), 1)
      new[t, l] = np.sum(b & ~cum) / capacity
      reused[t, l] = np.sum(b & cum) / capacity
      cum = cum | b
      free[t, l] = np.sum(np.asarray(exists[t][l], bool) & ~cum) / capacity
  return {"new": new, "reused": reused, "free": free}


def occupancy_bars(new: np.ndarray, reused: np.ndarray, path,
                   title: str = "Mask occupancy per layer and task") -> str:
  """Stacked bars per task, one panel per layer: newly reserved and reused shares."""
  new, reused = np.asarray(new), np.asarray(reused)
  tasks, layers = new.shape
  fig = plots._figure(3.2 * layers, 3.2)
  axes = fig.subplots(1, layers, squeeze=False)[0]
  x = np.arange(1, tasks + 1)
  for l, ax in enumerate(axes):
    ax.bar(x, 100 * reused[:, l], color="tab:blue", label="reused")
    ax.bar(x, 100 * new[:, l], bottom=100 * reused[:, l], color="tab:orange",
           label="newly reserved")
    ax.set_xticks(x)
    ax.set_xlabel("task")
    ax.set_title(LAYERS[l] if l < len(LAYERS) else f"layer {l + 1}", fontsize=9)
    if l == 0:
      ax.set_ylabel("% of the task's layer")
      ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  return plots._save(fig, path)


def generator_size(directory, weights: dict[str, np.ndarray],
                   masks: dict[str, np.ndarray]) -> dict[str, int]:
  """Writes the generator's weights and sparse masks to ``directory``; returns their bytes.

  Args:
    weights: name -> float array (stored as float32, uncompressed .npz).
    masks: name -> bool array, each task's binary mask of a layer (stored as
      the int32 flat indices of its ones, with its shape: a sparse format).

  Returns:
    {"weights": bytes, "masks": bytes, "total": bytes, "mask_ones": ones stored}.
  """
  os.makedirs(directory, exist_ok=True)
  w_path = os.path.join(directory, "generator_weights.npz")
  m_path = os.path.join(directory, "generator_masks.npz")
  np.savez(w_path, **{k: np.asarray(v, np.float32) for k, v in weights.items()})
  sparse, ones = {}, 0
  for k, v in masks.items():
    v = np.asarray(v, bool)
    sparse[f"{k}.indices"] = np.flatnonzero(v).astype(np.int32)
    sparse[f"{k}.shape"] = np.asarray(v.shape, np.int32)
    ones += int(v.sum())
  np.savez(m_path, **sparse)
  sizes = {"weights": os.path.getsize(w_path), "masks": os.path.getsize(m_path)}
  return {**sizes, "total": sizes["weights"] + sizes["masks"], "mask_ones": ones}
