"""Is one implementation's spread over seeds wider than another's? Prints the table (issue 16.4).

  python reproduce/seed_spread.py --ours=RUN/results.json [--ours=...] \
      --theirs=REF/seed_0.json --theirs=REF/seed_1.json ... [--protocol=class_il]

``--ours``: results.json files of this library (a multi-seed run counts each
of its seeds). ``--theirs``: any JSON with a ``class_il`` (and ``task_il``)
accuracy matrix, as a list of rows or as ``{"matrix": rows}``, row t = after
task t (row 0, the untrained model, optional: a matrix with one row more
than tasks has it) and a ``seed``, e.g. what reference/dynamos
writes for the authors' code. Per seed: the mean accuracy over the tasks seen
after each task and the final one; per side: mean, sample std, range; the
ratio of the variances and the two-sided F-test p-value (scipy); for our
seeds also the last task's mean keep ratios and loss terms from the log, the
places where a seed's last task goes wrong shows. Bad input: one line, exit 2.
"""

import argparse
import json
import sys

import numpy as np
from scipy import stats


class InputError(Exception):
  """Bad input: main prints it on one line and exits 2."""


def _matrix(record: dict, protocol: str) -> list[list[float]] | None:
  m = record.get(protocol)
  if isinstance(m, dict):
    m = m.get("matrix")
  return m


def trajectory(matrix: list[list[float | None]], tasks: int) -> list[float]:
  """Mean accuracy over the tasks seen after each task t = 1..tasks (row 0 dropped if there)."""
  rows = matrix[1:] if len(matrix) == tasks + 1 else matrix
  return [float(np.mean([v for v in row[: t + 1] if v is not None])) for t, row in enumerate(rows)]


def last_task_terms(log: list[dict]) -> dict[str, float]:
  """The last task's mean of every logged keep ratio and loss term."""
  if not log:
    return {}
  last = [e for e in log if e.get("task") == log[-1]["task"]]
  keys = [
    k
    for k in last[0]
    if k.startswith(("keep_ratio", "ce", "replay", "prototype", "reinforce", "mse", "loss"))
  ]
  return {k: float(np.mean([e[k] for e in last if k in e])) for k in keys}


def load_ours(path: str, protocol: str) -> list[dict]:
  """[{seed, matrix, task_il, terms}] of a results.json (each seed of a multi-seed run)."""
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise InputError(f"--ours={path}: cannot read it as JSON ({e})") from None
  runs = results.get("runs") or [dict(results, seed=results.get("config", {}).get("seed"))]
  out = []
  for run in runs:
    if _matrix(run, protocol) is None:
      raise InputError(f"--ours={path}: no {protocol} matrix (a finished run's results.json?)")
    out.append(
      {
        "seed": run.get("seed"),
        "matrix": _matrix(run, protocol),
        "task_il": _matrix(run, "task_il"),
        "terms": last_task_terms(run.get("log", [])),
      }
    )
  return out


def load_theirs(path: str, protocol: str) -> dict:
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise InputError(f"--theirs={path}: cannot read it as JSON ({e})") from None
  if _matrix(record, protocol) is None:
    raise InputError(f"--theirs={path}: no {protocol} matrix")
  return {
    "seed": record.get("seed"),
    "matrix": _matrix(record, protocol),
    "task_il": _matrix(record, "task_il"),
    "terms": {},
  }


def spread(finals: list[float]) -> tuple[float, float, float, float]:
  a = np.asarray(finals)
  return (
    float(a.mean()),
    float(a.std(ddof=1)) if len(a) > 1 else 0.0,
    float(a.min()),
    float(a.max()),
  )


def variance_test(ours: list[float], theirs: list[float]) -> tuple[float, float]:
  """(var ours / var theirs, two-sided F-test p-value); NaN with fewer than 2 of either."""
  if len(ours) < 2 or len(theirs) < 2:
    return float("nan"), float("nan")
  ratio = np.var(ours, ddof=1) / max(np.var(theirs, ddof=1), 1e-12)
  cdf = stats.f.cdf(ratio, len(ours) - 1, len(theirs) - 1)
  return float(ratio), float(2 * min(cdf, 1 - cdf))


def table(sides: dict[str, list[dict]], tasks: int) -> str:
  lines = [
    "| source | seed | "
    + " | ".join(f"after T{t + 1}" for t in range(tasks))
    + " | task-IL final |",
    "|---|---|" + "---|" * (tasks + 1),
  ]
  finals = {}
  for name, runs in sides.items():
    for r in runs:
      path = trajectory(r["matrix"], tasks)
      til = trajectory(r["task_il"], tasks)[-1] if r["task_il"] else float("nan")
      lines.append(
        f"| {name} | {r['seed']} | " + " | ".join(f"{v:.2f}" for v in path) + f" | {til:.2f} |"
      )
      finals.setdefault(name, []).append(path[-1])
  lines.append("")
  for name, values in finals.items():
    mean, std, low, high = spread(values)
    lines.append(
      f"{name}: final {mean:.2f} +- {std:.2f} over {len(values)} seeds (range {low:.2f}-{high:.2f})"
    )
  if len(finals) == 2:
    (a, va), (b, vb) = finals.items()
    ratio, p = variance_test(va, vb)
    lines.append(f"variance {a} / {b}: {ratio:.2f} (two-sided F-test p = {p:.3f})")
  for name, runs in sides.items():
    for r in runs:
      if r["terms"]:
        lines.append(
          f"{name} seed {r['seed']}, last task: "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["terms"].items()))
        )
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ours", action="append", default=[])
  parser.add_argument("--theirs", action="append", default=[])
  parser.add_argument("--protocol", default="class_il", choices=("class_il", "task_il"))
  args = parser.parse_args(argv)
  try:
    if not args.ours and not args.theirs:
      raise InputError("give --ours=results.json and/or --theirs=reference.json files")
    sides = {}
    if args.ours:
      sides["ours"] = [r for p in args.ours for r in load_ours(p, args.protocol)]
    if args.theirs:
      sides["theirs"] = [load_theirs(p, args.protocol) for p in args.theirs]
    tasks = min(len(r["matrix"][-1]) for runs in sides.values() for r in runs)
    print(table(sides, tasks))
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
