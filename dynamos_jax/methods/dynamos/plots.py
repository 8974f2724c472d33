"""Figures of a gated network's analyses (paper Figs. 4-6 and the keep ratios), as PNG
files; the activation-rate heatmaps of Figs. 3 and 7 are the shared ``plots.activation_heatmap``.
"""

from collections.abc import Sequence

import matplotlib
from matplotlib.colors import ListedColormap
import numpy as np

from dynamos_jax import plots


def jsd_matrix(
  jsd,
  path,
  labels: Sequence | None = None,
  scale: float = 100.0,
  title: str | None = None,
  fmt: str = ".1f",
) -> str:
  """Pairwise JSD between classes, each cell annotated with ``scale * JSD`` (Fig. 4).

  Args:
    jsd: [C, C] unscaled, from ``analysis.jensen_shannon``.
    path: output PNG.
    labels: C class names (default ``0..C-1``).
    scale: multiplier of the shown values (the paper shows JSD x 100).
    title: figure title (default names the scale).
    fmt: number format of the annotations.
  """
  values = scale * np.asarray(jsd, np.float64)
  return plots.matrix_image(
    values,
    path,
    title if title is not None else f"Jensen-Shannon divergence x {scale:g}",
    labels if labels is not None else list(range(values.shape[0])),
    fmt=fmt,
    cmap="magma",
    vmin=0.0,
  )


def tsne_scatter(
  points, classes, path, class_names: Sequence | None = None, title: str | None = None
) -> str:
  """2-D embedding coloured by class, with a legend (Fig. 5).

  Args:
    points: [N, 2].
    classes: [N] ints in ``[0, C)``.
    path: output PNG.
    class_names: C names (default the class indices).
    title: figure title.
  """
  points = np.asarray(points, np.float64)
  classes = np.asarray(classes)
  num = max(
    int(classes.max()) + 1 if classes.size else 0,
    len(class_names) if class_names is not None else 0,
  )
  names = plots.tick_labels(class_names, num, "{}")
  cmap = matplotlib.colormaps["tab10" if num <= 10 else "tab20"]
  fig = plots.figure(7.0, 6.0)
  ax = fig.add_subplot()
  for c in range(num):
    rows = classes == c
    if rows.any():
      ax.scatter(points[rows, 0], points[rows, 1], s=5, color=cmap(c % cmap.N), label=names[c])
  ax.legend(title="class", markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5))
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title)
  return plots.save(fig, path)


def trial_variability(
  actions,
  path,
  trial_labels: Sequence | None = None,
  first_filter: int = 0,
  title: str | None = None,
) -> str:
  """Actions of one image's trials, one row per trial, one cell per filter (Fig. 6).

  The title counts the filters kept in every row, dropped in every row, and the rest.

  Args:
    actions: [T, W] in {0, 1} (e.g. ``analysis.kept_trials(result, index)``).
    path: output PNG.
    trial_labels: T row names (default ``trial 1..T``).
    first_filter: index of the first column, for the x tick labels.
    title: prefix of the title.
  """
  actions = np.asarray(actions, np.float64).reshape(-1, np.shape(actions)[-1])
  t, w = actions.shape
  fig = plots.figure(min(max(5.0, 0.16 * w + 1.5), 22.0), 1.1 + 0.17 * max(t, 1))
  ax = fig.add_subplot()
  ax.imshow(
    actions if t else np.full((1, w), np.nan),
    cmap=ListedColormap(["#f2f2f2", "#1f4e9c"]),
    vmin=0,
    vmax=1,
    aspect="equal",
    interpolation="nearest",
  )
  ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
  ax.set_yticks(np.arange(-0.5, max(t, 1), 1), minor=True)
  ax.grid(which="minor", color="white", linewidth=0.8)
  ax.tick_params(which="minor", length=0)
  ticks = np.arange(0, w, 8)
  ax.set_xticks(ticks, [str(first_filter + i) for i in ticks], fontsize=7)
  ax.set_yticks(
    np.arange(t),
    [f"trial {i + 1}" for i in range(t)]
    if trial_labels is None
    else plots.tick_labels(trial_labels, t, "{}"),
  )
  ax.set_xlabel("filter (blue: on)")
  if t:
    on, off = int(np.all(actions == 1, 0).sum()), int(np.all(actions == 0, 0).sum())
    summary = f"always on {on}, always off {off}, variable {w - on - off} of {w}"
  else:
    summary = "no correct trial"
  ax.set_title(f"{title}: {summary}" if title else summary, fontsize=10)
  return plots.save(fig, path)


def keep_ratio_bars(
  ratios,
  path,
  group_labels: Sequence | None = None,
  agent_labels: Sequence | None = None,
  target: float | None = None,
  title: str | None = None,
  xlabel: str = "class",
) -> str:
  """Grouped bars: each agent's keep ratio per class (or task).

  Args:
    ratios: [G, L] in [0, 1], from ``analysis.keep_ratios``.
    path: output PNG.
    group_labels: G names (default ``0..G-1``).
    agent_labels: L names (default ``agent 1..L``).
    target: if given, a horizontal line at the target keep ratio.
    title: figure title.
    xlabel: name of the groups.
  """
  ratios = np.asarray(ratios, np.float64)
  g, l = ratios.shape
  agents = (
    plots.tick_labels(agent_labels, l, "{}")
    if agent_labels is not None
    else [f"agent {i + 1}" for i in range(l)]
  )
  fig = plots.figure(max(5.0, 0.7 * g + 2), 3.5)
  ax = fig.add_subplot()
  width = 0.8 / l
  x = np.arange(g)
  for i in range(l):
    ax.bar(x - 0.4 + width * (i + 0.5), ratios[:, i], width, label=agents[i])
  if target is not None:
    ax.axhline(target, color="black", linestyle=":", label="target")
  ax.set_xticks(x, plots.tick_labels(group_labels, g, "{}"))
  ax.set_ylim(0.0, 1.0)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("keep ratio")
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
  if title:
    ax.set_title(title)
  return plots.save(fig, path)
