"""Figures every command and learner family draws, as PNG files: accuracy
matrices, training curves, heatmaps, the analysis page; and the drawing helpers
the families' own figures use (``figure``, ``save``).

Every function takes numbers and an output path, writes a PNG there (creating
the parent folder) and returns the path as a string. Drawing uses matplotlib's
object-oriented API on the Agg canvas: no pyplot state, no display needed,
nothing left open.
"""

from collections.abc import Mapping, Sequence
import html
import os
from urllib.parse import quote

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

# Logged per-chunk values that are not loss terms (every other value is drawn as one).
NOT_LOSSES = ("step", "task", "epoch", "phase", "train_accuracy", "grad_norm", "buffer_seen")


def figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def save(fig: Figure, path) -> str:
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120, format="png")
  return path


def tick_labels(labels, n: int, default: str) -> list[str]:
  if labels is None:
    return [default.format(i) for i in range(n)]
  labels = [str(x) for x in labels]
  if len(labels) != n:
    raise ValueError(f"{len(labels)} labels for {n} entries")
  return labels


def viridis_blank_nan():
  return matplotlib.colormaps["viridis"].with_extremes(bad="white")


def annotate(ax, values: np.ndarray, fmt: str, vmin: float, vmax: float):
  """Writes each finite cell's value, dark on light cells and light on dark ones."""
  mid = (vmin + vmax) / 2
  for (i, j), v in np.ndenumerate(values):
    if np.isfinite(v):
      ax.text(
        j,
        i,
        format(v, fmt),
        ha="center",
        va="center",
        fontsize=8,
        color="black" if v > mid else "white",
      )


def activation_heatmap(
  rates,
  path,
  row_labels: Sequence | None = None,
  first_filter: int = 0,
  separators: Sequence[int] = (),
  title: str | None = None,
  ylabel: str = "class",
  xlabel: str = "filter",
) -> str:
  """Filter activation rates, one row per class or task (Figs. 3 and 7).

  Args:
    rates: [R, F] in [0, 1] (NaN rows are left blank), e.g. all 256 filters
      (Fig. 7) or ``rates[:, -40:]`` (Fig. 3).
    path: output PNG.
    row_labels: R names (default ``0..R-1``).
    first_filter: index of the first column, for the x tick labels (216 for
      the last 40 of 256).
    separators: column positions (relative to ``rates``) where a vertical line
      is drawn, e.g. ``(64, 128, 192)`` between the agents' layers.
    title: figure title.
    ylabel: ``"class"`` or ``"task"``.
    xlabel: ``"filter"`` or ``"unit"``.
  """
  rates = np.asarray(rates, np.float64)
  r, f = rates.shape
  fig = figure(min(max(6.0, 0.18 * f + 2), 22.0), 1.0 + 0.35 * r)
  ax = fig.add_subplot()
  im = ax.imshow(
    np.ma.masked_invalid(rates),
    cmap=viridis_blank_nan(),
    vmin=0.0,
    vmax=1.0,
    aspect="auto",
    interpolation="nearest",
  )
  ticks = np.arange(0, f, 1 if f <= 24 else 4 if f <= 64 else 16)
  ax.set_xticks(ticks, [str(first_filter + t) for t in ticks], fontsize=7)
  ax.set_yticks(np.arange(r), tick_labels(row_labels, r, "{}"))
  for s in separators:
    ax.axvline(s - 0.5, color="red", linewidth=1)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  fig.colorbar(im, ax=ax, label="activation rate", fraction=0.03, pad=0.01)
  return save(fig, path)


def task_accuracy_bars(final_row: Sequence[float], path, title: str | None = None) -> str:
  """The final accuracy on each task as bars, the average in the legend (SLNI's figures)."""
  values = np.asarray(final_row, np.float64)
  tasks = np.arange(1, len(values) + 1)
  ax = figure(1.5 + 0.6 * len(values), 3.2).add_subplot()
  ax.bar(tasks, values, color="tab:blue", label=f"average {np.mean(values):.2f}")
  ax.set_xticks(tasks, [f"T{t}" for t in tasks])
  ax.set_ylim(max(0.0, float(values.min()) - 10.0), 100.0)
  ax.set_ylabel("accuracy after the last task (%)")
  ax.legend(loc="lower right")
  ax.set_title(title or "")
  return save(ax.figure, path)


def matrix_image(
  values,
  path,
  title: str,
  labels: Sequence | None = None,
  fmt: str | None = None,
  cmap: str = "viridis",
  vmin: float | None = None,
) -> str:
  """A square matrix as an image with a colour bar (overlaps, correlations, JSD); ``fmt``
  annotates the cells (None: not), ``vmin`` sets the scale's low end (None: the minimum)."""
  values = np.asarray(values, np.float64)
  n = values.shape[0]
  size = min(1.5 + 0.55 * n, 7.0)
  fig = figure(size + 1.0, size)
  ax = fig.add_subplot()
  finite = values[np.isfinite(values)]
  low = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
  high = float(finite.max()) if finite.size else low
  high = high if high > low else low + 1.0
  im = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
  if fmt is not None:
    annotate(ax, values, fmt, low, high)
  if labels is not None:
    ax.set_xticks(np.arange(n), tick_labels(labels, n, "{}"))
    ax.set_yticks(np.arange(n), tick_labels(labels, n, "{}"))
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
  return save(fig, path)


def accuracy_matrix(
  accuracies: Sequence[Sequence[float | None]],
  path,
  row_labels: Sequence | None = None,
  col_labels: Sequence | None = None,
  title: str | None = None,
  fmt: str = ".1f",
) -> str:
  """Accuracy (%) on each task (columns) after each stage of training (rows), annotated.

  Args:
    accuracies: rows of per-task accuracies in percent; ``None`` (or a row
      shorter than the longest) leaves the cell blank. Typically T + 1 rows:
      the untrained network, then after each task.
    path: output PNG.
    row_labels: names of the rows; by default ``"untrained", "task 1", ...``
      when there is one row more than columns, else ``"task 1", ...``.
    col_labels: names of the columns (default ``"task 1", ...``).
    title: figure title.
    fmt: number format of the annotations.
  """
  rows = [list(r) for r in accuracies]
  cols = max((len(r) for r in rows), default=0)
  values = np.full((len(rows), cols), np.nan)
  for i, row in enumerate(rows):
    for j, v in enumerate(row):
      if v is not None:
        values[i, j] = float(v)
  if row_labels is None:
    offset = 1 if len(rows) == cols + 1 else 0
    row_labels = ["untrained"] * offset + [f"task {i + 1}" for i in range(len(rows) - offset)]
  names = tick_labels(row_labels, len(rows), "{}")
  col_names = (
    tick_labels(col_labels, cols, "{}")
    if col_labels is not None
    else [f"task {j + 1}" for j in range(cols)]
  )
  fig = figure(2.0 + 0.8 * cols, 1.2 + 0.5 * len(rows))
  ax = fig.add_subplot()
  im = ax.imshow(
    np.ma.masked_invalid(values),
    cmap=viridis_blank_nan(),
    vmin=0.0,
    vmax=100.0,
    aspect="auto",
    interpolation="nearest",
  )
  annotate(ax, values, fmt, 0.0, 100.0)
  ax.set_xticks(np.arange(cols), col_names)
  ax.set_yticks(np.arange(len(rows)), names)
  ax.set_xlabel("evaluated on")
  ax.set_ylabel("trained up to")
  if title:
    ax.set_title(title)
  fig.colorbar(im, ax=ax, label="accuracy (%)", fraction=0.046, pad=0.02)
  return save(fig, path)


def _series(logs: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
  xs, ys = [], []
  for i, record in enumerate(logs):
    value = record.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      xs.append(record.get("step", i))
      ys.append(float(value))
  return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def loss_terms(logs: Sequence[Mapping]) -> list[str]:
  """The logged values that are loss terms: all but :data:`NOT_LOSSES` and keep ratios."""
  present = set().union(*(r.keys() for r in logs)) if logs else set()
  return sorted(
    (k for k in present if k not in NOT_LOSSES and not k.startswith("keep_ratio")),
    key=lambda k: (k != "loss", k),
  )


def training_curves(
  logs: Sequence[Mapping],
  path,
  loss_keys: Sequence[str] | None = None,
  keep_ratio_target: float | None = None,
  title: str | None = None,
) -> str:
  """Loss terms and per-agent keep ratios against the step.

  Args:
    logs: per-chunk records like ``{"step": int, "task": int, "loss": float,
      "ce": float, "reinforce": float, "keep_ratio_1": float, ...}``. A key is
      drawn from the records that have it; absent keys are skipped, and the
      keep-ratio panel only appears if some record has a ``keep_ratio_*`` key.
      Dashed vertical lines mark where ``task`` changes.
    path: output PNG.
    loss_keys: loss terms to draw (default: every logged value but :data:`NOT_LOSSES`
      and the keep ratios, "loss" first, so any method's terms show).
      Their y axis is symmetric-log (the REINFORCE term can be large or negative).
    keep_ratio_target: if given, a horizontal line at the target keep ratio.
    title: figure title.
  """
  present = set().union(*(r.keys() for r in logs)) if logs else set()
  keys = [k for k in (loss_terms(logs) if loss_keys is None else loss_keys) if k in present]
  ratio_keys = sorted((k for k in present if k.startswith("keep_ratio")), key=lambda k: (len(k), k))
  panels = 1 + bool(ratio_keys)
  fig = figure(8.0, 3.2 * panels)
  axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
  boundaries = [
    logs[i]["step"] if "step" in logs[i] else i
    for i in range(len(logs) - 1)
    if "task" in logs[i] and "task" in logs[i + 1] and logs[i]["task"] != logs[i + 1]["task"]
  ]
  for key in keys:
    axes[0].plot(*_series(logs, key), label=key, linewidth=1)
  axes[0].set_yscale("symlog", linthresh=1e-2)
  axes[0].set_ylabel("loss")
  if keys:
    axes[0].legend(fontsize=7, ncols=2)
  if ratio_keys:
    for key in ratio_keys:
      axes[1].plot(*_series(logs, key), label=key.replace("keep_ratio_", "agent "), linewidth=1)
    if keep_ratio_target is not None:
      axes[1].axhline(keep_ratio_target, color="black", linestyle=":", label="target")
    axes[1].set_ylim(0.0, 1.0)
    axes[1].set_ylabel("keep ratio")
    axes[1].legend(fontsize=7, ncols=2)
  for ax in axes:
    for b in boundaries:
      ax.axvline(b, color="gray", linestyle="--", linewidth=0.7)
  axes[-1].set_xlabel("step")
  if title:
    fig.suptitle(title)
  return save(fig, path)


def index_html(
  figures: Sequence[tuple[str, str, str]], out_path, title: str = "Dynamos analysis"
) -> str:
  """A self-contained index.html showing the figures (relative links), one section each.

  Args:
    figures: ``(title, filename, caption)`` per figure; ``filename`` relative to
      the folder of ``out_path``. All text is HTML-escaped.
    out_path: the HTML file to write.
    title: page title.
  """
  parts = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    f"<title>{html.escape(title)}</title>",
    "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "figure{margin:0 0 2.5em}img{max-width:100%;border:1px solid #ddd}"
    "figcaption{color:#444;margin-top:.4em}</style>",
    "</head>",
    "<body>",
    f"<h1>{html.escape(title)}</h1>",
  ]
  for fig_title, filename, caption in figures:
    src = html.escape(quote(filename))
    parts += [
      "<figure>",
      f"<h2>{html.escape(fig_title)}</h2>",
      f'<a href="{src}"><img src="{src}" alt="{html.escape(fig_title)}"></a>',
      f"<figcaption>{html.escape(caption)}</figcaption>",
      "</figure>",
    ]
  parts += ["</body>", "</html>", ""]
  out_path = os.fspath(out_path)
  os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
  with open(out_path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return out_path
