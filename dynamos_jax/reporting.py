"""Reporting: the accuracy tables, the results record, results.json, the progress bar."""

import json
import os

import numpy as np

from dynamos_jax import metrics as metrics_lib
from dynamos_jax import parallel


def format_table(matrix: list[list[float | None]], title: str,
                 labels: list[str | None] | None = None) -> str:
  """An accuracy matrix as text: a row per evaluation, '-' for unseen tasks, the mean."""
  tasks = len(matrix[0])
  lines = [title, "after task | " + " ".join(f"  T{j + 1:<4}" for j in range(tasks)) + " |  mean"]
  for i, row in enumerate(matrix):
    seen = [v for v in row if v is not None]
    cells = " ".join(f"{v:7.2f}" if v is not None else "      -" for v in row)
    name = (labels[i] if labels and labels[i] else None) or ("untrained" if i == 0 else str(i))
    lines.append(f"{name:>10} | {cells} | {np.mean(seen):6.2f}")
  return "\n".join(lines)


def accuracy_results(progress: dict) -> dict:
  """The accuracy part of results.json from the run's progress record.

  Task-incremental runs: ``class_il`` and ``task_il`` (matrix, before,
  final average) and their ``metrics``; general continual learning:
  ``gcl`` and ``metrics.gcl``, both ``{"accuracy": float}``.
  """
  if "gcl" in progress:
    return {"gcl": {"accuracy": progress["gcl"]},
            "metrics": {"gcl": {"accuracy": progress["gcl"]}}}
  out = {p: {"matrix": progress[p], "before": progress["before"][p],
             "final_average": metrics_lib.final_average(progress[p])}
         for p in ("class_il", "task_il")}
  out["metrics"] = {p: metrics_lib.summarize(progress[p], progress["before"][p])
                    for p in ("class_il", "task_il")}
  return out


def format_results(results: dict) -> str:
  """The end-of-run summary: accuracy tables and metrics, or the GCL accuracy.

  A multi-seed run: each seed's headline figures, then their mean and std.
  """
  if "runs" in results:
    lines = []
    for run in results["runs"]:
      cells = [f"{p} {run['metrics'][p].get('final_average', run['metrics'][p].get('accuracy')):.2f}"
               for p in run["metrics"]]
      lines.append(f"seed {run['seed']}: " + ", ".join(cells))
    for protocol, values in results["summary"].items():
      lines.append(f"{protocol} over {len(results['runs'])} seeds: " + ", ".join(
          f"{name} {v['mean']:.2f} +- {v['std']:.2f}" for name, v in values.items()
          if v["mean"] is not None))
    return "\n".join(lines)
  if "gcl" in results:
    return f"GCL accuracy (all rotated test draws): {results['gcl']['accuracy']:.2f}%"
  return "\n".join([format_table(results["class_il"]["matrix"], "Class-IL accuracy (%)"),
                    format_table(results["task_il"]["matrix"], "Task-IL accuracy (%)"),
                    format_metrics(results["metrics"])])


def format_metrics(metrics: dict[str, dict[str, float | None]]) -> str:
  """The metrics of each protocol side by side; '-' where undefined (joint runs)."""
  names = {"final_average": "final average", "forgetting": "forgetting",
           "backward_transfer": "BWT", "forward_transfer": "FWT"}
  lines = [f"{'metric':>14} | {'class-IL':>8} | {'task-IL':>8}"]
  for key, name in names.items():
    cells = [metrics[p][key] for p in ("class_il", "task_il")]
    lines.append(f"{name:>14} | " + " | ".join("       -" if v is None else f"{v:8.2f}"
                                               for v in cells))
  return "\n".join(lines)


def results_record(config, seeds, progress: dict, train: dict) -> dict:
  """results.json: the config, each seed's accuracies, metrics and log, the timings.

  One seed: its record at the top level; several: ``seeds``, ``runs`` (one
  record each) and ``summary`` (every metric's values, mean and std).
  """
  if seeds.multi:
    runs = [{"seed": r["seed"], **accuracy_results(r), "log": r["log"]}
            for r in progress["seeds"]]
    train.update(seeds=len(seeds.seeds),
                 seed_strategy=parallel.resolve_strategy(config.train.seed_strategy),
                 devices=1 if seeds.mesh is None else seeds.mesh.size)
    return {"config": config.to_dict(), "seeds": seeds.seeds, "runs": runs,
            "summary": metrics_lib.over_seeds(runs), "train": train}
  return {"config": config.to_dict(), **accuracy_results(progress), "train": train,
          "log": progress["log"]}


def write_results(results: dict, workdir: str) -> str:
  """Writes ``workdir/results.json`` atomically (never a half-written file); returns its path.

  In a multi-host run only process 0 writes.
  """
  path = os.path.join(workdir, "results.json")
  if not parallel.is_writer():
    return path
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1)
  os.replace(path + ".tmp", path)
  return path


def progress_bar(total: int, enabled: bool):
  import tqdm  # Imported here: only the training loop shows progress.
  return tqdm.tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
