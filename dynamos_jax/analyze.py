"""Analysis of a run: ``python -m dynamos_jax.analyze --workdir=DIR [--seed=N]``.

Restores the newest checkpoint of a finished or interrupted run and writes
DIR/analysis/ (a multi-seed run: DIR/analysis/seed_N/ for every seed, or for
``--seed``): PNG figures, analysis.json with the numbers behind them, and
index.html showing them all. For every run: the accuracy matrices and the
training curves (loss terms, keep ratios). For runs with agents, on the test
set in eval mode (spec 15.2): filter activation rates per class and per task
(Figs. 3 and 7), the Jensen-Shannon divergence between the classes' rates in
the last gated layer (Fig. 4), a t-SNE of the last agent's attention vectors
(Fig. 5), trial-to-trial variability in sample mode (Fig. 6) and the agents'
keep ratios per class.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from dynamos_jax.cli import SEED, fail, run_dir_from_flags
from dynamos_jax.errors import InputError

_TRIALS = flags.DEFINE_integer("trials", 4, "Sample-mode passes per image for Fig. 6.")
_TRIAL_IMAGES = flags.DEFINE_integer("trial_images", 100,
                                     "Test images (the first ones) in the variability statistics.")
_TSNE_POINTS = flags.DEFINE_integer("tsne_points", 2000,
                                    "Test images in the t-SNE (a seeded random subset; 0: all).")
_TSNE_THREADS = flags.DEFINE_integer(
    "tsne_threads", 1, "scikit-learn threads for t-SNE (1 is fastest next to JAX on small "
    "machines; 0: scikit-learn's default).")
_TSNE_SEED = flags.DEFINE_integer("tsne_seed", 0,
                                  "Seed of the t-SNE, its subset and the sampled trials.")


def analyze(workdir: str, trials: int = 4, trial_images: int = 100, tsne_points: int = 2000,
            tsne_threads: int | None = 1, seed: int = 0,
            run_seed: int | None = None) -> dict | dict[int, dict]:
  """Writes ``workdir/analysis`` (figures, analysis.json, index.html); returns the numbers.

  ``seed`` seeds the t-SNE and the sampled trials; ``run_seed`` picks one seed
  of a multi-seed run (None: every seed, each in ``analysis/seed_N`` and
  returned as ``{seed: numbers}``).
  """
  from dynamos_jax.train import restore_seeds

  out = {}
  for exp, state, progress in restore_seeds(workdir, run_seed):
    # A seed's record of a multi-seed run carries its seed: its own folder.
    where = (os.path.join(workdir, "analysis", f"seed_{exp.seed}") if "seed" in progress
             else os.path.join(workdir, "analysis"))
    out[exp.seed] = _analyze_seed(exp, state, progress, where, workdir, trials, trial_images,
                                  tsne_points, tsne_threads, seed)
  return out if len(out) > 1 else next(iter(out.values()))


def _analyze_seed(exp, state, progress, out, workdir, trials, trial_images, tsne_points,
                  tsne_threads, seed) -> dict:
  from dynamos_jax.methods.dynamos import plots
  os.makedirs(out, exist_ok=True)
  figures, numbers = [], {"step": progress["total_steps"], "method": exp.config.method,
                          "dataset": exp.config.dataset}

  def add(title, path, caption):
    figures.append((title, os.path.basename(path), caption))

  # The agents' analyses need a gated ResNet (Dynamos and its variants).
  gated = getattr(exp.method, "gated", False)
  # Accuracy matrices and training curves: every run has them.
  for protocol, name in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
    if protocol in progress:
      add(f"{name} accuracy matrix",
          plots.accuracy_matrix(progress[protocol], os.path.join(out, f"{protocol}_matrix.png"),
                                title=f"{name} accuracy (%)"),
          "Row i: after training task i (row 0: untrained); column j: test task j.")
  if progress["log"]:
    add("Training curves",
        plots.training_curves(progress["log"], os.path.join(out, "training_curves.png"),
                              keep_ratio_target=exp.config.dynamos.kr if gated else None),
        "Per-chunk means of each loss term and, with agents, of each agent's keep ratio; "
        "dashed lines mark task boundaries.")

  matrix = progress.get("class_il")
  if matrix and len(matrix) > 2:  # Every task trained and evaluated after the last one.
    final = matrix[-1]
    if None not in final:
      add("Accuracy on each task after the last one",
          plots.task_accuracy_bars(final, os.path.join(out, "task_accuracy_bars.png"),
                                   title=f"{exp.config.method}, class-IL"),
          "Each task's accuracy after training the last task; the legend gives their average.")
  if gated:
    numbers.update(_agent_analyses(exp, state, out, add, trials, trial_images, tsne_points,
                                   tsne_threads, seed))
  elif exp.config.method == "dgm":  # samples, growth, mask occupancy, A_t, size on disk
    from dynamos_jax.methods.dgm import plots as dgm_plots
    numbers["dgm"] = dgm_plots.analyze_dgm(exp, state, progress, out, add, workdir)
  elif exp.config.method == "slni":  # its hidden layers, finally and after each task
    from dynamos_jax.methods.slni import plots as slni_plots
    numbers["hidden_layers"] = slni_plots.final_state(exp, state, exp.benchmark.num_tasks, out,
                                                         add)
    numbers["hidden_layers_by_task"] = slni_plots.after_each_task(workdir, exp.seed, out, add)
  else:
    print(f"method {exp.config.method} has no agents: only accuracy and training curves",
          file=sys.stderr)

  with open(os.path.join(out, "analysis.json"), "w") as f:
    json.dump(numbers, f, indent=1)
  plots.index_html(figures, os.path.join(out, "index.html"),
                   title=f"{exp.config.method} on {exp.config.dataset}, step "
                         f"{progress['total_steps']} ({os.path.abspath(workdir)})")
  print(f"analysis in {out}/index.html")
  return numbers


def _agent_analyses(exp, state, out, add, trials, trial_images, tsne_points, tsne_threads,
                    seed) -> dict:
  """Figures 3-7 and the keep ratios on the test set; returns their numbers."""
  from dynamos_jax.methods.dynamos import analysis
  from dynamos_jax.methods.dynamos import plots

  variables = {"params": state.learner.params, "batch_stats": state.learner.batch_stats}
  images, labels = exp.benchmark.test_set()  # MNIST-360: its rotated test draws.
  model = exp.method.model
  num_classes = model.num_classes
  test = analysis.collect(model, variables, images, "threshold",
                          exp.config.train.eval_batch_size)
  actions, attention = test["actions"], test["attention"]
  width = actions.shape[1] // model.num_agents
  class_names = [str(c) for c in range(num_classes)]
  correct = np.argmax(test["logits"], -1) == labels
  numbers = {"test_accuracy": float(100 * np.mean(correct)),
             # Per class (MNIST-360: over its rotated draws); None: no test image of it.
             "class_accuracy": [float(100 * np.mean(correct[labels == c])) if np.any(labels == c)
                                else None for c in range(num_classes)]}

  # Figs. 3 and 7: activation rates per class (and per task).
  class_rates = analysis.activation_rates(actions, labels, num_classes)
  numbers["class_rates"] = class_rates.tolist()
  add("Filter activation rates per class, last gated layer (Fig. 3)",
      plots.activation_heatmap(class_rates[:, -40:], os.path.join(out, "rates_class_last40.png"),
                               row_labels=class_names, first_filter=actions.shape[1] - 40,
                               title="Activation rate, last 40 filters of the last gated layer"),
      "Fraction of test images of each class for which the agent keeps the filter "
      "(threshold mode).")
  separators = tuple(width * l for l in range(1, model.num_agents))
  add("Filter activation rates per class, all gated layers (Fig. 7)",
      plots.activation_heatmap(class_rates, os.path.join(out, "rates_class_all.png"),
                               row_labels=class_names, separators=separators,
                               title="Activation rate per class, the four gated convolutions"),
      "Vertical lines separate the four gated convolutions.")
  if not exp.gcl:
    split = exp.benchmark.split
    tasks = split.task_of_label(labels)
    task_rates = analysis.activation_rates(actions, tasks, split.num_tasks)
    numbers["task_rates"] = task_rates.tolist()
    add("Filter activation rates per task (Fig. 7)",
        plots.activation_heatmap(task_rates, os.path.join(out, "rates_task_all.png"),
                                 row_labels=[f"T{t + 1}" for t in range(split.num_tasks)],
                                 separators=separators, ylabel="task",
                                 title="Activation rate per task, the four gated convolutions"),
        "Task-wise rates over each task's test images.")

  # Fig. 4: Jensen-Shannon divergence between class rate vectors, last gated layer.
  last_rates = analysis.last_layer(class_rates, model.num_agents)
  silent = [class_names[c] for c in np.flatnonzero(last_rates.sum(axis=1) == 0)]
  if silent:  # No distribution to compare (e.g. an early checkpoint): say so, draw the rest.
    print(f"note: no JSD figure (Fig. 4): class {', '.join(map(str, silent))} has no active "
          "filter in the last gated layer at this checkpoint; analyze a later one for it",
          file=sys.stderr)
    numbers["jsd"] = {"skipped": f"no active filter in the last gated layer for class "
                                 f"{', '.join(map(str, silent))}"}
  else:
    jsd = analysis.jensen_shannon(last_rates, base=2.0)
    summary = analysis.jsd_summary(jsd, scale=100.0)
    numbers["jsd"] = {"matrix_x100": (100 * jsd).tolist(), **_jsonable(summary),
                      "normalisation": "each class's rate vector divided by its sum over the "
                                       f"{width} filters", "log_base": 2}
    add("Jensen-Shannon divergence between classes (Fig. 4)",
        plots.jsd_matrix(jsd, os.path.join(out, "jsd.png"), labels=class_names,
                         title="JSD x 100, last gated layer (log base 2)"),
        f"Lowest pair {tuple(summary['lowest_pair'])} ({summary['lowest']:.2f}), highest "
        f"{tuple(summary['highest_pair'])} ({summary['highest']:.2f}); lowest / mean = "
        f"{summary['lowest_over_mean']:.3f}. Rates normalised to sum 1 over the filters.")

  # Fig. 5: t-SNE of the last agent's attention vectors.
  key = jax.random.key(seed)
  subset = np.arange(len(labels))
  if tsne_points and tsne_points < len(labels):
    subset = np.sort(np.asarray(jax.random.choice(jax.random.fold_in(key, 0), len(labels),
                                                  (tsne_points,), replace=False)))
  points = analysis.tsne(analysis.last_layer(attention[subset], model.num_agents), seed,
                         num_threads=tsne_threads or None)
  numbers["tsne_points"] = int(len(subset))
  add("t-SNE of the last agent's attention vectors (Fig. 5)",
      plots.tsne_scatter(points, labels[subset], os.path.join(out, "tsne.png"),
                         class_names=class_names,
                         title=f"t-SNE of v_L ({len(subset)} test images)"),
      "Pre-sigmoid attention vectors of the last agent, coloured by class.")

  # Fig. 6: trial-to-trial variability in sample mode.
  n = min(trial_images, len(labels))
  variability = analysis.trial_variability(model, variables, images[:n], labels[:n],
                                           trials, jax.random.fold_in(key, 1),
                                           model.num_agents)
  numbers["variability"] = {k: variability[k] for k in
                            ("mean_always_on", "mean_always_off", "mean_variable",
                             "num_aggregated")}
  numbers["variability"] = _jsonable(numbers["variability"]) | {"trials": trials, "images": n}
  shown = int(np.argmax(variability["num_kept"]))
  add("Trial-to-trial variability (Fig. 6)",
      plots.trial_variability(analysis.kept_trials(variability, shown),
                              os.path.join(out, "variability.png"),
                              title=f"Test image {shown} (class {labels[shown]}), correct trials"),
      f"Over {variability['num_aggregated']} images with at least 2 correct trials of "
      f"{trials}: on average {100 * variability['mean_always_on']:.1f}% of the last layer's "
      f"filters always on, {100 * variability['mean_always_off']:.1f}% always off, "
      f"{100 * variability['mean_variable']:.1f}% varying.")

  # Keep ratios at test time, per agent and class.
  ratios = analysis.keep_ratios(actions, labels, num_classes, model.num_agents)
  numbers["keep_ratios_per_class"] = ratios.tolist()
  add("Keep ratios at test time",
      plots.keep_ratio_bars(ratios, os.path.join(out, "keep_ratios.png"),
                            group_labels=class_names, target=exp.config.dynamos.kr),
      f"Fraction of filters each agent keeps, per class (threshold mode); target kr = "
      f"{exp.config.dynamos.kr}.")
  return numbers


def _jsonable(d: dict) -> dict:
  """numpy scalars and tuples to plain JSON values."""
  out = {}
  for k, v in d.items():
    if isinstance(v, (tuple, list)):
      out[k] = [x.item() if hasattr(x, "item") else x for x in v]
    else:
      out[k] = v.item() if hasattr(v, "item") else v
  return out


def main(argv):
  workdir = run_dir_from_flags(argv)
  if _TRIALS.value < 1 or _TRIAL_IMAGES.value < 1 or _TSNE_POINTS.value < 0:
    fail("--trials and --trial_images must be >= 1, --tsne_points >= 0")
  logging.set_verbosity(logging.WARNING)
  try:
    analyze(workdir, _TRIALS.value, _TRIAL_IMAGES.value, _TSNE_POINTS.value,
            _TSNE_THREADS.value, _TSNE_SEED.value, SEED.value)
  except InputError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main)
