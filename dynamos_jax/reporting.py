"""Reporting: the accuracy tables, the results record, results.json, the progress bar."""

import json
import os

import ml_collections
import numpy as np

from dynamos_jax import config as config_lib
from dynamos_jax import metrics as metrics_lib
from dynamos_jax import parallel
from dynamos_jax import sweep as sweep_lib


def format_table(
  matrix: list[list[float | None]], title: str, labels: list[str | None] | None = None
) -> str:
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
  final average) and their ``metrics``; with a validation split also
  ``validation`` (the same two protocols on the held-out rows) and
  ``validation_metrics`` (docs/running.md#a-validation-split); general
  continual learning: ``gcl`` and ``metrics.gcl``, both ``{"accuracy": float}``.
  """
  if "gcl" in progress:
    return {"gcl": {"accuracy": progress["gcl"]}, "metrics": {"gcl": {"accuracy": progress["gcl"]}}}
  out = {
    p: {
      "matrix": progress[p],
      "before": progress["before"][p],
      "final_average": metrics_lib.final_average(progress[p]),
    }
    for p in ("class_il", "task_il")
  }
  out["metrics"] = {
    p: metrics_lib.summarize(progress[p], progress["before"][p]) for p in ("class_il", "task_il")
  }
  if "validation" in progress:  # The validation rows have the test rows' layout.
    valid = accuracy_results(progress["validation"])
    out["validation"] = {p: valid[p] for p in ("class_il", "task_il")}
    out["validation_metrics"] = valid["metrics"]
  return out


def validation_summary(runs: list[dict]) -> dict:
  """``{"validation_summary": over_seeds of each run's validation_metrics}``, beside
  ``summary``; ``{}`` for runs without a validation split (their records are unchanged)."""
  if not runs or "validation_metrics" not in runs[0]:
    return {}
  return {
    "validation_summary": metrics_lib.over_seeds(
      [{"metrics": r["validation_metrics"]} for r in runs]
    )
  }


def _validation_line(results: dict) -> list[str]:
  """The printed line of the validation split's final averages (none without a split)."""
  share = results["config"]["data"].get("validation", 0.0)
  if "validation_summary" in results:
    summary = results["validation_summary"]
    cells = [
      f"{PROTOCOLS[p]} {v['final_average']['mean']:.2f} +- {v['final_average']['std']:.2f}"
      for p, v in summary.items()
    ]
    return [
      f"validation split (data.validation={share:g}) final average over "
      f"{len(results['runs'])} seeds: " + ", ".join(cells)
    ]
  if "validation_metrics" in results:
    cells = [
      f"{PROTOCOLS[p]} {v['final_average']:.2f}" for p, v in results["validation_metrics"].items()
    ]
    return [f"validation split (data.validation={share:g}) final average: " + ", ".join(cells)]
  return []


def format_results(results: dict) -> str:
  """The end-of-run summary: accuracy tables and metrics, or the GCL accuracy.

  A multi-seed run: each seed's headline figures, then their mean and std.
  """
  if "sweep" in results:
    return format_sweep(results)
  if "runs" in results:
    lines = []
    for run in results["runs"]:
      cells = [
        f"{p} {run['metrics'][p].get('final_average', run['metrics'][p].get('accuracy')):.2f}"
        for p in run["metrics"]
      ]
      lines.append(f"seed {run['seed']}: " + ", ".join(cells))
    for protocol, values in results["summary"].items():
      lines.append(
        f"{protocol} over {len(results['runs'])} seeds: "
        + ", ".join(
          f"{name} {v['mean']:.2f} +- {v['std']:.2f}"
          for name, v in values.items()
          if v["mean"] is not None
        )
      )
    return "\n".join(lines + _validation_line(results))
  if "gcl" in results:
    return f"GCL accuracy (all rotated test draws): {results['gcl']['accuracy']:.2f}%"
  return "\n".join(
    [
      format_table(results["class_il"]["matrix"], "Class-IL accuracy (%)"),
      format_table(results["task_il"]["matrix"], "Task-IL accuracy (%)"),
      format_metrics(results["metrics"]),
      *_validation_line(results),
    ]
  )


def format_metrics(metrics: dict[str, dict[str, float | None]]) -> str:
  """The metrics of each protocol side by side; '-' where undefined (joint runs)."""
  names = {
    "final_average": "final average",
    "forgetting": "forgetting",
    "backward_transfer": "BWT",
    "forward_transfer": "FWT",
  }
  lines = [f"{'metric':>14} | {'class-IL':>8} | {'task-IL':>8}"]
  for key, name in names.items():
    cells = [metrics[p][key] for p in ("class_il", "task_il")]
    lines.append(
      f"{name:>14} | " + " | ".join("       -" if v is None else f"{v:8.2f}" for v in cells)
    )
  return "\n".join(lines)


def results_record(config, seeds, progress: dict, train: dict) -> dict:
  """results.json: the config, each seed's accuracies, metrics and log, the timings.

  One seed: its record at the top level; several: ``seeds``, ``runs`` (one
  record each) and ``summary`` (every metric's values, mean and std), with a
  validation split also ``validation_summary`` (the same of the validation
  metrics); a sweep: ``runs`` (one per member, with its ``setting``) and
  ``sweep`` (``sweep_record``).
  """
  if seeds.sweep is not None:
    runs = [
      {
        "seed": r["seed"],
        "setting": setting,
        "label": seeds.sweep.label(setting),
        **accuracy_results(r),
        **_method(r),
        "log": r["log"],
      }
      for r, setting in zip(progress["seeds"], seeds.settings)
    ]
    train.update(
      members=len(seeds.seeds),
      settings=len(seeds.sweep.settings),
      seed_strategy=parallel.resolve_strategy(config.train.seed_strategy),
      devices=1 if seeds.mesh is None else seeds.mesh.size,
    )
    return {
      "config": config.to_dict(),
      "seeds": config_lib.run_seeds(config),
      "runs": runs,
      "sweep": sweep_record(
        seeds.sweep, runs, headline(seeds.exps[0].benchmark), config.train.rank_on
      ),
      "train": train,
    }
  if seeds.multi:
    runs = [
      {"seed": r["seed"], **accuracy_results(r), **_method(r), "log": r["log"]}
      for r in progress["seeds"]
    ]
    train.update(
      seeds=len(seeds.seeds),
      seed_strategy=parallel.resolve_strategy(config.train.seed_strategy),
      devices=1 if seeds.mesh is None else seeds.mesh.size,
    )
    return {
      "config": config.to_dict(),
      "seeds": seeds.seeds,
      "runs": runs,
      "summary": metrics_lib.over_seeds(runs),
      **validation_summary(runs),
      "train": train,
    }
  return {
    "config": config.to_dict(),
    **accuracy_results(progress),
    **_method(progress),
    "train": train,
    "log": progress["log"],
  }


def _method(record: dict) -> dict:
  """What the method added to a seed's record (``Method.results``), if anything."""
  return {"method": record["method"]} if "method" in record else {}


def write_results(results: dict, workdir: str) -> str:
  """Writes ``workdir/results.json`` atomically (never a half-written file); returns its path.

  A sweep also writes each setting's results as if run alone
  (``workdir/sweep/<label>/results.json``) and its chart. In a multi-host run
  only process 0 writes.
  """
  path = os.path.join(workdir, "results.json")
  if not parallel.is_writer():
    return path
  _write_json(results, path)
  if "sweep" in results:
    for label, record in setting_results(results, workdir).items():
      directory = os.path.join(workdir, sweep_lib.DIRECTORY, label)
      os.makedirs(directory, exist_ok=True)
      _write_json(record, os.path.join(directory, "results.json"))
    runs = {
      label: {r["seed"]: r for r in results["runs"] if r["label"] == label}
      for label in results["sweep"]["settings"]
    }
    plot_comparison(
      {label: s["summary"] for label, s in results["sweep"]["settings"].items()},
      runs,
      os.path.join(workdir, sweep_lib.DIRECTORY, "sweep.png"),
      title=f"{len(runs)} settings of {', '.join(results['sweep']['keys'])}; "
      + _best_title(results["sweep"]),
    )
  return path


def _write_json(record: dict, path: str) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)


# ---- sweeps: each setting's record, the table of settings, the best one ----


def headline(benchmark) -> tuple[str, str]:
  """(protocol, metric) a benchmark's settings are ranked by: the GCL accuracy, a
  task-incremental benchmark's task-IL final average, else the class-IL one."""
  if benchmark.protocols == ("gcl",):
    return "gcl", "accuracy"
  if benchmark.kind == "task-incremental":
    return "task_il", "final_average"
  return "class_il", "final_average"


# Where a sweep's ranking reads its figures: results.json's per-setting summary of each split.
_SPLITS = {"validation": "validation_summary", "test": "summary"}


def ranked_on(settings: dict, rank_on: str) -> str | None:
  """The split a sweep's best setting is chosen on: the test set when asked for
  (``train.rank_on=test``, split or not), else the validation split when the run has
  one, else none: ranking on the test set would choose by the figures the sweep
  reports, so without a split no setting is named best (docs/running.md#sweeps)."""
  if rank_on == "test":
    return "test"
  if all("validation_summary" in s for s in settings.values()):
    return "validation"
  return None


def sweep_record(sweep, runs: list[dict], ranked_by: tuple[str, str], rank_on: str) -> dict:
  """results.json's ``sweep``: the keys, each setting's values and summary over its
  seeds (``metrics.over_seeds``; with a validation split also its
  ``validation_summary``), the ranking metric, the split it was ranked on
  (``ranked_on``: "validation", "test", or None) and the best setting (the highest mean
  of that split's summary, the first listed among equals; None when ``ranked_on`` is)."""
  settings = {}
  for setting in sweep.settings:
    label = sweep.label(setting)
    mine = [r for r in runs if r["label"] == label]
    settings[label] = {
      "values": setting,
      "seeds": [r["seed"] for r in mine],
      "summary": metrics_lib.over_seeds(mine),
      **validation_summary(mine),
    }
  protocol, metric = ranked_by
  split = ranked_on(settings, rank_on)
  best = None
  if split is not None:
    key = _SPLITS[split]
    best = max(settings, key=lambda l: settings[l][key][protocol][metric]["mean"])
  return {
    "keys": list(sweep.keys),
    "settings": settings,
    "ranked_by": [protocol, metric],
    "ranked_on": split,
    "best": best,
  }


def setting_results(results: dict, workdir: str) -> dict[str, dict]:
  """``{label: the results.json of that setting run alone}`` from a sweep's results.

  One seed: the one-seed record; several: the multi-seed record. The config is
  the setting's (``sweep.setting_config``), so it reads as that run's.
  """
  config = ml_collections.ConfigDict(results["config"])
  out = {}
  for label, entry in results["sweep"]["settings"].items():
    alone = sweep_lib.setting_config(config, entry["values"]).to_dict()
    runs = [
      {k: v for k, v in r.items() if k not in ("setting", "label")}
      for r in results["runs"]
      if r["label"] == label
    ]
    train = {**results["train"], "trained_in": os.path.abspath(workdir), "setting": label}
    if len(runs) == 1:
      out[label] = {
        "config": alone,
        **{k: v for k, v in runs[0].items() if k != "seed"},
        "train": train,
      }
    else:
      out[label] = {
        "config": alone,
        "seeds": entry["seeds"],
        "runs": runs,
        "summary": entry["summary"],
        **{k: entry[k] for k in ("validation_summary",) if k in entry},
        "train": train,
      }
  return out


# Printed where a sweep names no best: how to get one (docs/running.md#sweeps).
NO_BEST = (
  "no best setting named: this sweep has no validation split to rank on; add "
  "--config.data.validation=0.1 to rank on a validation split, or "
  "--config.train.rank_on=test to rank on the test set, knowingly"
)


def _split_name(split: str) -> str:
  return "the validation split" if split == "validation" else "the test set"


def _best_title(record: dict) -> str:
  """The chart's word on the best setting."""
  if record.get("best") is None:
    return "no best named (no validation split)"
  return f"best on {_split_name(record.get('ranked_on', 'test'))}: {record['best']}"


def format_sweep(results: dict) -> str:
  """The sweep's tables (a row per setting, mean +- std over its seeds: the test set's,
  and the validation split's when the run has one) and the best setting with the split
  it was chosen on, or the line that says how to get one."""
  record = results["sweep"]
  settings = record["settings"]
  test = {label: s["summary"] for label, s in settings.items()}
  lines = [
    format_summary(test, results["seeds"], name="setting", headlines_only=True, on="test set")
  ]
  if all("validation_summary" in s for s in settings.values()):
    share = results["config"]["data"].get("validation", 0.0)
    valid = {label: s["validation_summary"] for label, s in settings.items()}
    lines.append(
      format_summary(
        valid,
        results["seeds"],
        name="setting",
        headlines_only=True,
        on=f"validation split (data.validation={share:g})",
      )
    )
  if record.get("best") is None:
    return "\n".join(lines + [NO_BEST])
  protocol, metric = record["ranked_by"]
  split = record.get("ranked_on", "test")  # Records before ranked_on ranked on the test set.
  best = settings[record["best"]]
  figures = f"{best['summary'][protocol][metric]['mean']:.2f} +- "
  figures += f"{best['summary'][protocol][metric]['std']:.2f}"
  if split == "validation":
    v = best["validation_summary"][protocol][metric]
    figures = f"validation {v['mean']:.2f} +- {v['std']:.2f}; test {figures}"
  lines.append(
    f"best setting by {PROTOCOLS.get(protocol, protocol)} {METRICS.get(metric, metric)} "
    f"on {_split_name(split)}: {record['best']} ({figures})"
  )
  return "\n".join(lines)


# ---- the comparison table and chart (compare.py and sweeps) ----

# Display names; a run's protocols and metrics are whatever its results.json has.
PROTOCOLS = {"class_il": "class-IL", "task_il": "task-IL", "gcl": "GCL"}
METRICS = {
  "final_average": "final avg",
  "forgetting": "forgetting",
  "backward_transfer": "BWT",
  "forward_transfer": "FWT",
  "accuracy": "accuracy",
}


def _headline(protocol_metrics: dict) -> str:
  """The metric a protocol is judged by: the final average, or GCL's accuracy."""
  return "final_average" if "final_average" in protocol_metrics else "accuracy"


def format_summary(
  summary: dict,
  seeds: list[int],
  name: str = "method",
  headlines_only: bool = False,
  on: str = "",
) -> str:
  """The comparison as a text table, mean +- std over the seeds.

  Args:
    summary: ``{row name: metrics.over_seeds(...)}`` (a method, or a sweep's setting).
    seeds: the seeds averaged over. name: the first column's title.
    headlines_only: a column per protocol, its final average (or GCL accuracy).
    on: the data the figures are of (a sweep's "test set" and validation split), said
      in the first line; empty: not said.
  """
  first = next(iter(summary.values()))
  columns = [
    (p, m) for p in first for m in first[p] if not headlines_only or m == _headline(first[p])
  ]
  width = max(16, *(len(n) for n in summary))
  header = f"{name:>{width}} | " + " | ".join(
    f"{PROTOCOLS.get(p, p) + ' ' + METRICS.get(m, m):>20}" for p, m in columns
  )
  lines = [f"{on + ': ' if on else ''}mean +- std over seeds {', '.join(map(str, seeds))}", header]
  for row, protocols in summary.items():
    cells = []
    for p, m in columns:
      entry = protocols[p][m]
      cells.append(
        f"{'-':>20}" if entry["mean"] is None else f"{entry['mean']:12.2f} +- {entry['std']:5.2f}"
      )
    lines.append(f"{row:>{width}} | " + " | ".join(cells))
  return "\n".join(lines)


def plot_comparison(
  summary: dict, runs: dict[str, dict[int, dict]], path: str, title: str | None = None
) -> str:
  """Final averages per method or setting (bars, +- std) and average accuracy after
  each task (curves); ``title`` over both."""
  import matplotlib  # Imported here: only the charts need it.

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(summary)
  protocols = list(summary[names[0]])
  fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
  width = 0.8 / len(protocols)
  for k, protocol in enumerate(protocols):
    headline = [summary[n][protocol][_headline(summary[n][protocol])] for n in names]
    x = np.arange(len(names)) + (k - (len(protocols) - 1) / 2) * width
    bars.bar(
      x,
      [h["mean"] for h in headline],
      width,
      yerr=[h["std"] for h in headline],
      capsize=3,
      label=PROTOCOLS.get(protocol, protocol),
    )
  bars.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
  bars.set_ylabel("final average accuracy (%)")
  bars.set_ylim(0, 100)
  bars.legend()
  bars.set_title("At the end of the stream")
  for name in names:
    # Mean over seeds of the average accuracy on the tasks seen after each task.
    rows = [
      [np.mean([v for v in row if v is not None]) for row in r["class_il"]["matrix"][1:]]
      for r in runs[name].values()
      if "class_il" in r
    ]
    if rows and len(rows[0]) > 1:
      curve = np.mean(rows, axis=0)
      curves.plot(np.arange(1, len(curve) + 1), curve, marker="o", label=name)
      curves.set_xticks(np.arange(1, len(curve) + 1))
  curves.set_xlabel("tasks trained")
  curves.set_ylabel("class-IL average accuracy on seen tasks (%)")
  curves.set_ylim(0, 100)
  if curves.lines:
    curves.legend()
  curves.set_title("After each task (class-IL)")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def progress_bar(total: int, enabled: bool):
  # Imported here: only the training loop shows progress. tqdm.auto: a widget in a
  # notebook, text in a terminal.
  from tqdm.auto import tqdm

  return tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
