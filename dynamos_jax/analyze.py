"""Analysis of a run: ``python -m dynamos_jax.analyze --workdir=DIR [--seed=N]``.

Restores the newest checkpoint of a finished or interrupted run and writes
DIR/analysis/ (a multi-seed run: DIR/analysis/seed_N/ for every seed, or for
``--seed``): PNG figures, analysis.json with the numbers behind them, and
index.html showing them all. For every run: the accuracy matrices and the
training curves (loss terms, keep ratios). Then the method's own analyses
(``Method.analyze``): a gated network's Figs. 3-7 (methods/dynamos/gate_analysis.py),
SLNI's hidden layers (methods/slni/plots.py), DGM's samples, growth and masks
(methods/dgm/plots.py).
"""

import dataclasses
import json
import os
import sys
from typing import Any, Callable

from absl import app, flags, logging

from dynamos_jax import plots
from dynamos_jax.cli import SEED, fail, run_dir_from_flags
from dynamos_jax.errors import InputError

_TRIALS = flags.DEFINE_integer("trials", 4, "Sample-mode passes per image for Fig. 6.")
_TRIAL_IMAGES = flags.DEFINE_integer(
  "trial_images", 100, "Test images (the first ones) in the variability statistics."
)
_TSNE_POINTS = flags.DEFINE_integer(
  "tsne_points", 2000, "Test images in the t-SNE (a seeded random subset; 0: all)."
)
_TSNE_THREADS = flags.DEFINE_integer(
  "tsne_threads",
  1,
  "scikit-learn threads for t-SNE (1 is fastest next to JAX on small "
  "machines; 0: scikit-learn's default).",
)
_TSNE_SEED = flags.DEFINE_integer(
  "tsne_seed", 0, "Seed of the t-SNE, its subset and the sampled trials."
)


def analyze(
  workdir: str,
  trials: int = 4,
  trial_images: int = 100,
  tsne_points: int = 2000,
  tsne_threads: int | None = 1,
  seed: int = 0,
  run_seed: int | None = None,
) -> dict | dict[int, dict]:
  """Writes ``workdir/analysis`` (figures, analysis.json, index.html); returns the numbers.

  ``seed`` seeds the t-SNE and the sampled trials; ``run_seed`` picks one seed
  of a multi-seed run (None: every seed, each in ``analysis/seed_N`` and
  returned as ``{seed: numbers}``).
  """
  from dynamos_jax.trainer import restore_seeds

  out = {}
  for exp, state, progress in restore_seeds(workdir, run_seed):
    # A seed's record of a multi-seed run carries its seed: its own folder.
    where = (
      os.path.join(workdir, "analysis", f"seed_{exp.seed}")
      if "seed" in progress
      else os.path.join(workdir, "analysis")
    )
    out[exp.seed] = _analyze_seed(
      exp, state, progress, where, workdir, trials, trial_images, tsne_points, tsne_threads, seed
    )
  return out if len(out) > 1 else next(iter(out.values()))


@dataclasses.dataclass(frozen=True)
class Run:
  """One seed of a run as the analyze command hands it to ``Method.analyze``.

  Attributes:
    exp: the seed's ``Experiment`` (method, benchmark, config).
    progress: its progress record (accuracy rows, log, steps).
    out: the folder its figures and analysis.json go to.
    workdir: the run's directory (the after-task arrays live there).
    add: ``add(title, png_path, caption)`` shows a figure on the index page.
    trials, trial_images, tsne_points, tsne_threads, seed: the command's options.
  """

  exp: Any
  progress: dict
  out: str
  workdir: str
  add: Callable[[str, str, str], None]
  trials: int = 4
  trial_images: int = 100
  tsne_points: int = 2000
  tsne_threads: int | None = 1
  seed: int = 0


def _analyze_seed(
  exp, state, progress, out, workdir, trials, trial_images, tsne_points, tsne_threads, seed
) -> dict:
  os.makedirs(out, exist_ok=True)
  figures, numbers = (
    [],
    {"step": progress["total_steps"], "method": exp.config.method, "dataset": exp.config.dataset},
  )

  def add(title, path, caption):
    figures.append((title, os.path.basename(path), caption))

  # Accuracy matrices and training curves: every run has them.
  for protocol, name in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
    if protocol in progress:
      add(
        f"{name} accuracy matrix",
        plots.accuracy_matrix(
          progress[protocol],
          os.path.join(out, f"{protocol}_matrix.png"),
          title=f"{name} accuracy (%)",
        ),
        "Row i: after training task i (row 0: untrained); column j: test task j.",
      )
  if progress["log"]:
    marks = exp.method.training_marks()
    add(
      "Training curves",
      plots.training_curves(
        progress["log"],
        os.path.join(out, "training_curves.png"),
        keep_ratio_target=marks.get("keep_ratio"),
      ),
      "Per-chunk means of each loss term and, with agents, of each agent's keep ratio; "
      "dashed lines mark task boundaries.",
    )

  matrix = progress.get("class_il")
  if matrix and len(matrix) > 2:  # Every task trained and evaluated after the last one.
    final = matrix[-1]
    if None not in final:
      add(
        "Accuracy on each task after the last one",
        plots.task_accuracy_bars(
          final, os.path.join(out, "task_accuracy_bars.png"), title=f"{exp.config.method}, class-IL"
        ),
        "Each task's accuracy after training the last task; the legend gives their average.",
      )
  shown = len(figures)
  run = Run(exp, progress, out, workdir, add, trials, trial_images, tsne_points, tsne_threads, seed)
  own = exp.method.analyze(state.learner, run)
  if not own and len(figures) == shown:
    print(
      f"method {exp.config.method} has no analyses of its own: only accuracy and training curves",
      file=sys.stderr,
    )
  numbers.update(own)

  with open(os.path.join(out, "analysis.json"), "w") as f:
    json.dump(numbers, f, indent=1)
  plots.index_html(
    figures,
    os.path.join(out, "index.html"),
    title=f"{exp.config.method} on {exp.config.dataset}, step "
    f"{progress['total_steps']} ({os.path.abspath(workdir)})",
  )
  print(f"analysis in {out}/index.html")
  return numbers


def main(argv):
  workdir = run_dir_from_flags(argv)
  if _TRIALS.value < 1 or _TRIAL_IMAGES.value < 1 or _TSNE_POINTS.value < 0:
    fail("--trials and --trial_images must be >= 1, --tsne_points >= 0")
  logging.set_verbosity(logging.WARNING)
  try:
    analyze(
      workdir,
      _TRIALS.value,
      _TRIAL_IMAGES.value,
      _TSNE_POINTS.value,
      _TSNE_THREADS.value,
      _TSNE_SEED.value,
      SEED.value,
    )
  except InputError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main)
