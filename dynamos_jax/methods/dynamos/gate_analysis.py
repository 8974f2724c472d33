"""analyze's pages for a gated network (Dynamos and its variants): on the test set in
evaluation mode, the filter activation rates per class and per task (paper Figs. 3 and 7),
the Jensen-Shannon divergence between the classes' rates in the last gated layer (Fig. 4),
a t-SNE of the last agent's attention vectors (Fig. 5), trial-to-trial variability in
sample mode (Fig. 6) and the agents' keep ratios per class.
"""

import os
import sys

import jax
import numpy as np

from dynamos_jax import plots as shared_plots
from dynamos_jax.methods.dynamos import analysis, plots


def gate_analyses(learner, run) -> dict:
  """Figures 3-7 and the keep ratios on the test set into ``run.out``; returns their numbers.

  ``learner``: the method's state (``params``, ``batch_stats`` of the gated ResNet);
  ``run``: the analyze command's ``analyze.Run`` of this seed.
  """
  exp, out, add = run.exp, run.out, run.add
  trials, trial_images, seed = run.trials, run.trial_images, run.seed
  tsne_points, tsne_threads = run.tsne_points, run.tsne_threads
  variables = {"params": learner.params, "batch_stats": learner.batch_stats}
  images, labels = exp.benchmark.test_set()  # MNIST-360: its rotated test draws.
  model = exp.method.model
  num_classes = model.num_classes
  test = analysis.collect(model, variables, images, "threshold", exp.config.train.eval_batch_size)
  actions, attention = test["actions"], test["attention"]
  width = actions.shape[1] // model.num_agents
  class_names = [str(c) for c in range(num_classes)]
  correct = np.argmax(test["logits"], -1) == labels
  numbers = {
    "test_accuracy": float(100 * np.mean(correct)),
    # Per class (MNIST-360: over its rotated draws); None: no test image of it.
    "class_accuracy": [
      float(100 * np.mean(correct[labels == c])) if np.any(labels == c) else None
      for c in range(num_classes)
    ],
  }

  # Figs. 3 and 7: activation rates per class (and per task).
  class_rates = analysis.activation_rates(actions, labels, num_classes)
  numbers["class_rates"] = class_rates.tolist()
  add(
    "Filter activation rates per class, last gated layer (Fig. 3)",
    shared_plots.activation_heatmap(
      class_rates[:, -40:],
      os.path.join(out, "rates_class_last40.png"),
      row_labels=class_names,
      first_filter=actions.shape[1] - 40,
      title="Activation rate, last 40 filters of the last gated layer",
    ),
    "Fraction of test images of each class for which the agent keeps the filter (threshold mode).",
  )
  separators = tuple(width * l for l in range(1, model.num_agents))
  add(
    "Filter activation rates per class, all gated layers (Fig. 7)",
    shared_plots.activation_heatmap(
      class_rates,
      os.path.join(out, "rates_class_all.png"),
      row_labels=class_names,
      separators=separators,
      title="Activation rate per class, the four gated convolutions",
    ),
    "Vertical lines separate the four gated convolutions.",
  )
  if not exp.gcl:
    split = exp.benchmark.split
    tasks = split.task_of_label(labels)
    task_rates = analysis.activation_rates(actions, tasks, split.num_tasks)
    numbers["task_rates"] = task_rates.tolist()
    add(
      "Filter activation rates per task (Fig. 7)",
      shared_plots.activation_heatmap(
        task_rates,
        os.path.join(out, "rates_task_all.png"),
        row_labels=[f"T{t + 1}" for t in range(split.num_tasks)],
        separators=separators,
        ylabel="task",
        title="Activation rate per task, the four gated convolutions",
      ),
      "Task-wise rates over each task's test images.",
    )

  # Fig. 4: Jensen-Shannon divergence between class rate vectors, last gated layer.
  last_rates = analysis.last_layer(class_rates, model.num_agents)
  silent = [class_names[c] for c in np.flatnonzero(last_rates.sum(axis=1) == 0)]
  if silent:  # No distribution to compare (e.g. an early checkpoint): say so, draw the rest.
    print(
      f"note: no JSD figure (Fig. 4): class {', '.join(map(str, silent))} has no active "
      "filter in the last gated layer at this checkpoint; analyze a later one for it",
      file=sys.stderr,
    )
    numbers["jsd"] = {
      "skipped": f"no active filter in the last gated layer for class {', '.join(map(str, silent))}"
    }
  else:
    jsd = analysis.jensen_shannon(last_rates, base=2.0)
    summary = analysis.jsd_summary(jsd, scale=100.0)
    numbers["jsd"] = {
      "matrix_x100": (100 * jsd).tolist(),
      **jsonable(summary),
      "normalisation": f"each class's rate vector divided by its sum over the {width} filters",
      "log_base": 2,
    }
    add(
      "Jensen-Shannon divergence between classes (Fig. 4)",
      plots.jsd_matrix(
        jsd,
        os.path.join(out, "jsd.png"),
        labels=class_names,
        title="JSD x 100, last gated layer (log base 2)",
      ),
      f"Lowest pair {tuple(summary['lowest_pair'])} ({summary['lowest']:.2f}), highest "
      f"{tuple(summary['highest_pair'])} ({summary['highest']:.2f}); lowest / mean = "
      f"{summary['lowest_over_mean']:.3f}. Rates normalised to sum 1 over the filters.",
    )

  # Fig. 5: t-SNE of the last agent's attention vectors.
  key = jax.random.key(seed)
  subset = np.arange(len(labels))
  if tsne_points and tsne_points < len(labels):
    subset = np.sort(
      np.asarray(
        jax.random.choice(jax.random.fold_in(key, 0), len(labels), (tsne_points,), replace=False)
      )
    )
  points = analysis.tsne(
    analysis.last_layer(attention[subset], model.num_agents), seed, num_threads=tsne_threads or None
  )
  numbers["tsne_points"] = int(len(subset))
  add(
    "t-SNE of the last agent's attention vectors (Fig. 5)",
    plots.tsne_scatter(
      points,
      labels[subset],
      os.path.join(out, "tsne.png"),
      class_names=class_names,
      title=f"t-SNE of v_L ({len(subset)} test images)",
    ),
    "Pre-sigmoid attention vectors of the last agent, coloured by class.",
  )

  # Fig. 6: trial-to-trial variability in sample mode.
  n = min(trial_images, len(labels))
  variability = analysis.trial_variability(
    model, variables, images[:n], labels[:n], trials, jax.random.fold_in(key, 1), model.num_agents
  )
  numbers["variability"] = {
    k: variability[k]
    for k in ("mean_always_on", "mean_always_off", "mean_variable", "num_aggregated")
  }
  numbers["variability"] = jsonable(numbers["variability"]) | {"trials": trials, "images": n}
  shown = int(np.argmax(variability["num_kept"]))
  add(
    "Trial-to-trial variability (Fig. 6)",
    plots.trial_variability(
      analysis.kept_trials(variability, shown),
      os.path.join(out, "variability.png"),
      title=f"Test image {shown} (class {labels[shown]}), correct trials",
    ),
    f"Over {variability['num_aggregated']} images with at least 2 correct trials of "
    f"{trials}: on average {100 * variability['mean_always_on']:.1f}% of the last layer's "
    f"filters always on, {100 * variability['mean_always_off']:.1f}% always off, "
    f"{100 * variability['mean_variable']:.1f}% varying.",
  )

  # Keep ratios at test time, per agent and class.
  ratios = analysis.keep_ratios(actions, labels, num_classes, model.num_agents)
  numbers["keep_ratios_per_class"] = ratios.tolist()
  add(
    "Keep ratios at test time",
    plots.keep_ratio_bars(
      ratios,
      os.path.join(out, "keep_ratios.png"),
      group_labels=class_names,
      target=exp.config.dynamos.kr,
    ),
    f"Fraction of filters each agent keeps, per class (threshold mode); target kr = "
    f"{exp.config.dynamos.kr}.",
  )
  return numbers


def jsonable(d: dict) -> dict:
  """numpy scalars and tuples to plain JSON values."""
  out = {}
  for k, v in d.items():
    if isinstance(v, (tuple, list)):
      out[k] = [x.item() if hasattr(x, "item") else x for x in v]
    else:
      out[k] = v.item() if hasattr(v, "item") else v
  return out
