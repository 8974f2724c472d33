"""What a user of DGM looks at: samples, growth, mask occupancy, A_t, size on disk.

See docs/dgm.md#what-a-run-reports.

The numbers come from a DGM run's checkpoint (``analyze_dgm``, called by
``python -m dynamos_jax.analyze --workdir=DIR`` for a ``dgm`` run) and its
accuracy matrix; every figure function takes plain arrays, writes a PNG
(matplotlib's Agg canvas, as ``plots.py``) and returns its path.

- A grid of generated images for every seen class after each task, from the
  method's after-task reports (``task_arrays``: ``samples``, drawn by
  ``summary.samples`` from one fixed noise per seed, the same after every
  task): one row per class seen, column j the same noise in every row and in
  every task's grid, so a class's row can be compared across tasks; each
  class's drift (its samples' mean absolute change since the task that
  learned it) is reported. A run without reports (older ones) gets one grid
  of the checkpoint's G (``generated_grid``).
- The growth curve: the active output channels of conv1-3 after each task
  against the linear worst case (the start width plus one start width per
  expansion, docs/dgm.md#growth-after-each-task), and the masked parameters.
  The ResNet G (ImageNet-50): its seven channel groups (each named by the
  weight that outputs it) and its allocated masked weights
  (``imagenet.ResNetFamily``); ten classes a task, each class's drift measured
  since its task.
- Mask occupancy per layer and task (paper Fig. 3a): of each task's binary
  mask, the share of the layer that it newly reserves and the share it reuses
  from earlier tasks, and what is left free.
- The A_t curve: the mean of the class-IL row after task t over the classes
  seen (the paper's A5 and A10 marked for MNIST); with
  ``dgm.selection=best_valid`` also the code's best-validation report
  (``methods/dgm/selection.py``), read from the after-task reports.
- The generator's size on disk: its weights (float32) and the binary masks
  of the tasks stored sparse (the int32 flat indices of their ones), written
  as .npz files whose sizes are reported (paper Table 4).
"""

from collections.abc import Sequence
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import plots, task_arrays
from dynamos_jax.methods.dgm import summary

# The paper's Table 1 (A5, A10) on MNIST, drawn next to a run's curve.
PAPER_MNIST = {
  "DGMw": {5: 98.75, 10: 96.46},
  "DGMa": {5: 99.17, 10: 97.92},
  "JT": {5: 97.66, 10: 98.10},
}
LAYERS = ("conv1", "conv2", "conv3")
COLORS = (
  "tab:blue",
  "tab:orange",
  "tab:green",
  "tab:red",
  "tab:brown",
  "tab:pink",
  "tab:olive",
  "tab:cyan",
  "tab:gray",
  "tab:purple",
)


def average_accuracy(matrix: Sequence[Sequence[float | None]]) -> list[float]:
  """A_t for t = 1..T: the mean of row t (after task t) over its seen (non-None) entries."""
  return [float(np.mean([v for v in row if v is not None])) for row in matrix[1:]]


def at_curve(
  values: Sequence[float],
  path,
  reference: dict | None = None,
  title: str = "A_t: average accuracy over the classes seen",
  selected: Sequence[float] | None = None,
) -> str:
  """A_t after each task; ``reference``: {name: {task: value}} drawn as markers;
  ``selected``: the best-validation report's A_t (``dgm.selection=best_valid``)."""
  t = np.arange(1, len(values) + 1)
  ax = plots.figure(5.5, 3.4).add_subplot()
  ax.plot(t, values, "o-", color="tab:blue", label="this run (final model)")
  lowest = min(values)
  if selected is not None:
    ax.plot(
      np.arange(1, len(selected) + 1),
      selected,
      "x--",
      color="tab:gray",
      label="best-validation report",
    )
    lowest = min(lowest, *selected)
  for (name, points), marker in zip((reference or {}).items(), "s^dv"):
    xs = [k for k in sorted(points) if k <= len(values)]
    ax.plot(xs, [points[k] for k in xs], marker, linestyle="none", label=f"paper {name}")
  ax.set_xticks(t)
  ax.set_xlabel("after task t")
  ax.set_ylabel("A_t (%)")
  ax.set_ylim(max(0.0, lowest - 5.0), 100.5)
  ax.legend(loc="lower left", fontsize=8)
  ax.set_title(title)
  return plots.save(ax.figure, path)


def sample_grid(
  images: np.ndarray,
  path,
  class_names: Sequence | None = None,
  title: str = "Generated samples (fixed noise)",
) -> str:
  """images [K, n, H, W, C] (K classes, n samples each), float in [-1, 1] or uint8: one
  row per class."""
  k, n = images.shape[:2]
  if np.asarray(images).dtype == np.uint8:
    pixels = np.asarray(images, np.float32) / 255.0
  else:
    pixels = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
  names = plots.tick_labels(class_names, k, "class {}")
  fig = plots.figure(0.6 * n + 1.0, 0.6 * k + 0.6)
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
  return plots.save(fig, path)


def masked_params(counts: np.ndarray, nz: int, kernel: int = 4) -> np.ndarray:
  """[rows] conv1-3 weights for output channels ``counts`` [rows, 3] (inputs nz, C_1, C_2)."""
  counts = np.asarray(counts, np.int64)
  inputs = np.stack([np.full(len(counts), nz), counts[:, 0], counts[:, 1]], axis=1)
  return (inputs * counts * kernel * kernel).sum(axis=1)


def growth_curve(
  counts: np.ndarray,
  path,
  nz: int,
  title: str = "Generator growth",
  names: Sequence[str] = LAYERS,
  params: Sequence[int] | None = None,
  worst: Sequence[int] | None = None,
  ylabel: str = "conv1-3 weights",
) -> str:
  """counts int [T + 1, L]: each layer's output channels at the start (row 0) and after each
  task (DCGAN: conv1-3).

  Left: channels per layer, with the linear worst case start x (1 + t) dashed
  (each expansion adds at most about the start width,
  docs/dgm.md#growth-after-each-task). Right: the
  masked parameters, with the worst case of those widths (``params``,
  ``worst``: [T + 1] each; None: conv1-3's, ``masked_params``).
  """
  counts = np.asarray(counts)
  t = np.arange(len(counts))
  fig = plots.figure(9.0, 3.4)
  left, right = fig.subplots(1, 2)
  for l, (name, color) in enumerate(zip(names, COLORS)):
    left.plot(t, counts[:, l], "o-", color=color, label=name)
    left.plot(t, counts[0, l] * (1 + t), "--", color=color, alpha=0.5)
  left.set_xlabel("tasks learned")
  left.set_ylabel("output channels")
  left.legend(
    fontsize=8 if len(names) <= 3 else 6, title="dashed: linear worst case", title_fontsize=7
  )
  if worst is None:
    worst = masked_params(counts[0][None, :] * (1 + t)[:, None], nz)
  if params is None:
    params = masked_params(counts, nz)
  right.plot(t, params, "o-", color="tab:purple", label="masked weights")
  right.plot(t, worst, "--", color="tab:purple", alpha=0.5, label="linear worst case widths")
  right.set_xlabel("tasks learned")
  right.set_ylabel(ylabel)
  right.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  return plots.save(fig, path)


def occupancy(
  binaries: Sequence[Sequence[np.ndarray]], exists: Sequence[Sequence[np.ndarray]]
) -> dict[str, np.ndarray]:
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


def occupancy_bars(
  new: np.ndarray,
  reused: np.ndarray,
  path,
  title: str = "Mask occupancy per layer and task",
  names: Sequence[str] = LAYERS,
) -> str:
  """Stacked bars per task, one panel per layer: newly reserved and reused shares (more
  than five layers: rows of five panels)."""
  new, reused = np.asarray(new), np.asarray(reused)
  tasks, layers = new.shape
  rows = -(-layers // 5)
  cols = -(-layers // rows)
  fig = plots.figure(3.2 * cols, 3.2 * rows)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for ax in axes[layers:]:
    ax.set_visible(False)
  axes = axes[:layers]
  x = np.arange(1, tasks + 1)
  for l, ax in enumerate(axes):
    ax.bar(x, 100 * reused[:, l], color="tab:blue", label="reused")
    ax.bar(
      x, 100 * new[:, l], bottom=100 * reused[:, l], color="tab:orange", label="newly reserved"
    )
    ax.set_xticks(x)
    ax.set_xlabel("task")
    ax.set_title(names[l] if l < len(names) else f"layer {l + 1}", fontsize=9)
    if l % cols == 0:
      ax.set_ylabel("% of the task's layer")
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)  # off the bars
  fig.suptitle(title, fontsize=10)
  return plots.save(fig, path)


def generator_size(
  directory, weights: dict[str, np.ndarray], masks: dict[str, np.ndarray]
) -> dict[str, int]:
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


# --- a DGM run's checkpoint ---------------------------------------------------------------

SAMPLES_PER_CLASS = 8
_GRID_KEY = 20190603  # the fixed noise of the sample grids (any run, any checkpoint)


def finished_tasks(progress: dict) -> int:
  """Tasks ended and evaluated in the run's record (rows of its class-IL matrix but row 0)."""
  return max(len(progress.get("class_il", [])) - 1, 0)


def generated_grid(method, learner, classes: int, n: int = SAMPLES_PER_CLASS) -> np.ndarray:
  """[classes, n, 32, 32, C] images: the same noise for every class (its one-hot prefix set)."""
  base = jax.random.normal(jax.random.key(_GRID_KEY), (n, method.spec.nz))
  width = summary.onehot_width(method)
  out = []
  for c in range(classes):
    z = base
    if width:
      z = z.at[:, :width].set(jax.nn.one_hot(jnp.full((n,), c), width))
    out.append(np.asarray(summary.generate(method, learner, z, c)))
  return np.stack(out)


def sample_drift(samples: Sequence[np.ndarray], classes_per_task: int = 1) -> list[list[float]]:
  """samples: per task T (from 1), uint8 [C T, n, H, W, C'] (``after_task``'s, C classes a
  task). Returns, per task T, each seen class c's mean absolute pixel change (in [0, 1]) of
  its samples since the task that learned it (c // C + 1): 0 for the newest task's classes,
  growing if G forgets c."""
  c_ = classes_per_task
  return [
    [
      float(np.mean(np.abs(s[c].astype(np.float32) - samples[c // c_][c].astype(np.float32))))
      / 255.0
      for c in range(len(s))
    ]
    for s in samples
  ]


def best_valid_report(reports: Sequence[dict]) -> list[dict] | None:
  """The best-validation records of the after-task reports (None: not a best_valid run)."""
  if not reports or "best_valid" not in reports[0]:
    return None
  return [
    {
      "task": t + 1,
      "valid": float(r["best_valid"]),
      "epoch": int(r["best_valid_epoch"]),
      "test": [float(v) for v in r["best_valid_test"]],
      "test_average": float(np.mean(r["best_valid_test"])),
    }
    for t, r in enumerate(reports)
  ]


def task_grids(
  reports: Sequence[dict], out: str, add, seed: int, classes_per_task: int = 1
) -> list[list[float]]:
  """One grid per task of the reports' samples (module docstring); returns the drift."""
  samples = [r["samples"] for r in reports]
  drift = sample_drift(samples, classes_per_task)
  for t, images in enumerate(samples):
    add(
      f"Generated samples after task {t + 1}",
      sample_grid(
        images,
        os.path.join(out, f"dgm_samples_task{t + 1}.png"),
        title=f"G after task {t + 1}: fixed noise (seed {seed}), s = s_max, eval BN",
      ),
      "One row per class seen, each through its own task's masks, BN and head; column j "
      "is the same noise in every row and in every task's grid (its one-hot prefix set "
      "to the class). Mean absolute change of each class's samples since it was "
      "learned: " + ", ".join(f"{d:.3f}" for d in drift[t]) + ".",
    )
  return drift


def _names(names: Sequence[str]) -> str:
  return "conv1-3" if tuple(names) == LAYERS else ", ".join(names)


def analyze_dgm(exp, learner, progress: dict, out: str, add, workdir: str | None = None) -> dict:
  """The DGM figures of a run (module docstring) into ``out``; returns their numbers.

  ``workdir``: the run's directory, for the after-task reports (None: none read).
  """
  method = exp.method
  finished = finished_tasks(progress)
  numbers: dict = {"finished_tasks": finished}
  reports = task_arrays.load(workdir, exp.seed)[:finished] if workdir else []
  selected = best_valid_report(reports)
  if selected is not None:
    numbers["best_valid"] = selected
  matrix = progress.get("class_il")
  if matrix and finished:
    values = average_accuracy(matrix)
    numbers["A_t"] = values
    mnist = exp.config.dataset == "dgm-mnist"
    add(
      "A_t: average accuracy over the classes seen",
      at_curve(
        values,
        os.path.join(out, "dgm_at.png"),
        reference=PAPER_MNIST if mnist else None,
        selected=None if selected is None else [r["test_average"] for r in selected],
      ),
      "Mean of the class-IL row after task t over the classes seen so far"
      + ("; markers: the paper's Table 1 (A5, A10)" if mnist else "")
      + (
        "; dashed: the test A_t at each task's best validation evaluation (the code's "
        "report; the final model is the accuracy matrix's)."
        if selected
        else "."
      ),
    )
  if not finished:
    print("no task finished yet: only the accuracy figures", file=sys.stderr)
    return numbers
  numbers_ = summary.arrays(method, learner, finished)
  counts, names = numbers_["counts"], numbers_["names"]
  numbers["channels"] = counts.tolist()
  numbers["masked_params"] = numbers_["params"]
  resnet = method.resnet
  variant = "w (ResNet G)" if resnet else method.spec.variant
  add(
    "Generator growth per layer",
    growth_curve(
      counts,
      os.path.join(out, "dgm_growth.png"),
      method.spec.nz,
      title=f"DGM{variant} generator growth",
      names=names,
      params=numbers_["params"],
      worst=numbers_["worst"],
      ylabel=numbers_["ylabel"],
    ),
    f"Output channels of {_names(names)} each task trained on (tasks learned before it on "
    f"the x axis), dashed: the linear worst case; right: {numbers_['ylabel']}"
    + (" (the allocated shapes, idle shortcut convs included)" if resnet else "")
    + ". Masked weights: "
    + ", ".join(str(v) for v in numbers["masked_params"])
    + ".",
  )
  occ = occupancy(numbers_["binaries"], numbers_["exists"])
  numbers["occupancy"] = {k: v.tolist() for k, v in occ.items()}
  add(
    "Mask occupancy per layer and task",
    occupancy_bars(
      occ["new"], occ["reused"], os.path.join(out, "dgm_occupancy.png"), names=numbers_["layers"]
    ),
    "Each task's binary mask at s_max as a share of the layer the task ran on"
    + (" (its allocation then)" if resnet else "")
    + ": reused "
    "(reserved by earlier tasks) and newly reserved; free after the last task: "
    + ", ".join(f"{v:.2f}" for v in occ["free"][-1])
    + f" ({_names(numbers_['layers'])}).",
  )
  per_task = getattr(method, "classes_per_task", 1)
  if reports and all("samples" in r for r in reports):
    numbers["sample_drift"] = task_grids(reports, out, add, exp.seed, per_task)
  else:  # A run without after-task reports: the checkpoint's G only.
    images = generated_grid(method, learner, finished * per_task)
    add(
      "Generated samples of every class learned",
      sample_grid(
        images,
        os.path.join(out, "dgm_samples.png"),
        title=f"G after task {finished}: fixed noise, s = s_max, eval BN",
      ),
      "One row per class, each through its own task's masks, BN and head; the same noise "
      "in every row (its one-hot prefix set to the class).",
    )
  sizes = generator_size(os.path.join(out, "generator"), numbers_["weights"], numbers_["masks"])
  numbers["size_bytes"] = sizes
  # The method's own counts (Table 3 and 4's quantities) next to the files' sizes.
  numbers["generator"] = {
    k: int(v) for k, v in summary.generator_size(method, learner, finished).items()
  }
  print(
    f"generator on disk: weights {sizes['weights'] / 1e6:.3f} MB, masks (sparse) "
    f"{sizes['masks'] / 1e6:.3f} MB",
    file=sys.stderr,
  )
  return numbers
