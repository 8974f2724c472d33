"""What a user of SLNI's family looks at in its hidden layers, for analyze
(docs/slni.md#hidden-layer-statistics).

Two sources, both per regularised (hidden) layer:

- The final state (the newest checkpoint), on each task's test images: the
  units' activation rates per task, the overlap of the tasks' ever-active
  units, the correlation matrix on the last task.
- After each task (``task_arrays``: what ``SLNI.after_task`` kept as the run
  went): the fraction of units active per example and of units ever active on
  every task seen so far, the overlap matrices and correlation matrices as
  they evolved, the activation histograms, and the neuron importance alpha.

Figure functions take plain arrays, write a PNG and return its path.
"""

import os

import numpy as np

from dynamos_jax import plots, task_arrays
from dynamos_jax.methods.slni import representation as rep


def matrix_grid(matrices: list[np.ndarray], path, titles: list[str], suptitle: str) -> str:
  """Square matrices side by side on one colour scale (e.g. one per task)."""
  n = len(matrices)
  fig = plots.figure(min(2.4 * n + 1.0, 16.0), 2.8)
  finite = np.concatenate([np.asarray(m, np.float64).ravel() for m in matrices])
  low, high = float(np.nanmin(finite)), float(np.nanmax(finite))
  high = high if high > low else low + 1.0
  for i, (m, title) in enumerate(zip(matrices, titles)):
    ax = fig.add_subplot(1, n, i + 1)
    im = ax.imshow(m, cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(im, ax=fig.axes, fraction=0.02, pad=0.02)
  fig.suptitle(suptitle, fontsize=10)
  return plots.save(fig, path)


def histograms(counts: np.ndarray, edges: np.ndarray, path, title: str) -> str:
  """One line per task: the distribution of a layer's positive activations, [T, B] counts."""
  ax = plots.figure(5.5, 3.4).add_subplot()
  centres = (edges[1:] + edges[:-1]) / 2
  for t, c in enumerate(counts):
    total = max(int(np.sum(c)), 1)
    ax.plot(centres, c / total, label=f"T{t + 1}")
  ax.set_yscale("log")
  ax.set_xlabel("activation (positive values)")
  ax.set_ylabel("fraction of positive values")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=10)
  return plots.save(ax.figure, path)


def _triangle(values: list[np.ndarray]) -> np.ndarray:
  """[T, T] from a list whose entry t holds T_t = t + 1 values: NaN where not yet seen."""
  out = np.full((len(values), len(values)), np.nan)
  for t, v in enumerate(values):
    out[t, : len(v)] = v
  return out


def final_state(exp, learner, tasks: int, out: str, add) -> list[dict]:
  """Per hidden layer, from the final weights on each task's test images: unit rates per
  task, the Jaccard overlap of the ever-active units, the last task's correlation matrix."""
  acts = [
    exp.method.hidden(learner.params, exp.benchmark.task_test_set(t)[0]) for t in range(tasks)
  ]
  names = [f"T{t + 1}" for t in range(tasks)]
  numbers = []
  for l in range(len(acts[0])):
    layer = rep.layer_report([a[l] for a in acts])
    n = l + 1
    add(
      f"Layer {n}: activation rate of each unit on each task",
      plots.activation_heatmap(
        layer["unit_rates"],
        os.path.join(out, f"layer{n}_unit_rates.png"),
        names,
        title=f"layer {n}: fraction of test images on which a unit is active",
        ylabel="task",
        xlabel="unit",
      ),
      "Which units each task uses: a sparse, task-specific pattern is what SLNI aims at.",
    )
    add(
      f"Layer {n}: overlap of the tasks' active units",
      plots.matrix_image(
        layer["overlap"],
        os.path.join(out, f"layer{n}_overlap.png"),
        f"layer {n}: Jaccard overlap of ever-active units",
        names,
        ".2f",
      ),
      "Units active on at least one test image of each task, compared between tasks. "
      f"Active per example: {', '.join(f'{v:.2f}' for v in layer['active_per_example'])}; "
      f"ever active: {', '.join(f'{v:.2f}' for v in layer['ever_active'].mean(1))} (by task).",
    )
    add(
      f"Layer {n}: correlation matrix",
      plots.matrix_image(
        layer["correlation"],
        os.path.join(out, f"layer{n}_correlation.png"),
        f"layer {n}: C = H^T H / N on task {tasks}'s test images",
      ),
      "The uncentred correlation of the hidden units that SNI and SLNI decorrelate.",
    )
    numbers.append(
      {
        "layer": n,
        "active_per_example": layer["active_per_example"].tolist(),
        "ever_active": layer["ever_active"].mean(1).tolist(),
        "overlap": layer["overlap"].tolist(),
        "unit_rates": layer["unit_rates"].tolist(),
      }
    )
  return numbers


def after_each_task(workdir: str, seed: int, out: str, add) -> list[dict]:
  """The figures of the reports kept after each task (none kept: no figures, [])."""
  reports = task_arrays.load(workdir, seed)
  if not reports:
    return []
  layers = sorted(
    {
      int(k[1:].split("_")[0])
      for k in reports[0]
      if k.startswith("l") and k[1:].split("_")[0].isdigit()
    }
  )
  after = [f"after T{t + 1}" for t in range(len(reports))]
  names = [f"T{t + 1}" for t in range(len(reports))]
  numbers = []
  for n in layers:
    get = lambda key: [r[f"l{n}_{key}"] for r in reports]  # noqa: E731
    active = _triangle(get("active_per_example"))
    ever = _triangle([e.mean(1) for e in get("ever_active")])
    for values, key, what in (
      (active, "active_per_example", "fraction of units active per example"),
      (ever, "ever_active", "fraction of units ever active"),
    ):
      add(
        f"Layer {n}: {what}, after each task",
        plots.matrix_image(
          values,
          os.path.join(out, f"layer{n}_{key}_by_task.png"),
          f"layer {n}: {what}",
          names,
          ".2f",
        ),
        "Row t: after training task t; column s: on task s's test images. "
        "Sparse representations keep these low; stable rows mean old tasks' codes persist.",
      )
    add(
      f"Layer {n}: overlap of the tasks' active units, after each task",
      matrix_grid(
        get("overlap"),
        os.path.join(out, f"layer{n}_overlap_by_task.png"),
        after,
        f"layer {n}: Jaccard overlap of ever-active units",
      ),
      "Each panel: the seen tasks' ever-active units compared, after that task.",
    )
    add(
      f"Layer {n}: correlation matrix, after each task",
      matrix_grid(
        get("correlation"),
        os.path.join(out, f"layer{n}_correlation_by_task.png"),
        after,
        f"layer {n}: C = H^T H / N on the newest task's test images",
      ),
      "What the decorrelating regularisers act on, as the tasks go by.",
    )
    last = reports[-1]
    add(
      f"Layer {n}: activation histograms",
      histograms(
        last[f"l{n}_hist"],
        last[f"l{n}_hist_edges"],
        os.path.join(out, f"layer{n}_histograms.png"),
        f"layer {n}: positive activations on each task, after the last task",
      ),
      "Zeros are left out (their share is 1 minus the active fraction above).",
    )
    alpha = np.stack(get("alpha"))
    top = float(alpha.max()) or 1.0
    add(
      f"Layer {n}: neuron importance alpha, after each task",
      plots.activation_heatmap(
        alpha / top,
        os.path.join(out, f"layer{n}_alpha_by_task.png"),
        after,
        title=f"layer {n}: alpha per unit / {top:.3g} (its largest value)",
        ylabel="",
        xlabel="unit",
      ),
      "The accumulated neuron importance that discounts SNID/SLNID's penalty on important units.",
    )
    numbers.append(
      {
        "layer": n,
        "active_per_example": [v.tolist() for v in get("active_per_example")],
        "ever_active": [e.mean(1).tolist() for e in get("ever_active")],
        "alpha_mean": [float(np.mean(a)) for a in alpha],
      }
    )
  return numbers
