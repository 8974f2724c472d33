"""Comparison of methods over seeds.

  python -m dynamos_jax.compare --config=configs/seq_mnist.py:500 \
      --methods=sgd,baseline,dynamos --seeds=0,1,2 --workdir=DIR [--config.KEY=VALUE ...]

Runs every (method, seed) with the config's other values (``--config.*``
overrides apply to all), skipping runs whose DIR/METHOD/seed_SEED/results.json
is already there for the same config and resuming interrupted ones from their
checkpoints. A method's missing seeds train in one program
(DIR/METHOD/seeds_A_B_..., ``--config.seeds`` of that run), which then writes
each seed's results to its seed_SEED folder; ``--one_program=False`` trains
them one at a time in their folders. On CPU the seeds are unrolled and each
seed's accuracies equal its one-seed run's (docs/running.md#many-seeds-in-one-program); with vmap
(the GPU default) they agree to rounding. Writes DIR/comparison.json (every
run's metrics and their mean and standard deviation per method),
DIR/comparison.png, and prints the table.
"""

import json
import os
import sys

from absl import app, flags, logging

from dynamos_jax import workdir_lock
from dynamos_jax.cli import CONFIG, WORKDIR, fail, parse_flags
from dynamos_jax.errors import InputError

# The table and the chart live with the other reports (a sweep prints them too).
from dynamos_jax.reporting import format_summary, plot_comparison  # noqa: F401

_METHODS = flags.DEFINE_list("methods", None, "Methods to compare, e.g. sgd,baseline,dynamos.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds, e.g. 0,1,2.")
_ONE_PROGRAM = flags.DEFINE_bool(
  "one_program", True, "Train a method's missing seeds in one program."
)


def run_dir(workdir: str, method: str, seed: int) -> str:
  return os.path.join(workdir, method, f"seed_{seed}")


def _finished(config, directory: str) -> dict | None:
  """The run's results when results.json exists for this config, else None."""
  from dynamos_jax.checkpoint import config_differences

  path = os.path.join(directory, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    results = json.load(f)
  if config_differences(results["config"], config.to_dict()):
    return None  # Same directory, another config: train_and_evaluate explains or starts over.
  return results


def _train_alone(config, directory: str) -> dict:
  from dynamos_jax import trainer

  print(f"== {config.method}, seed {config.seed}: training in {directory}", file=sys.stderr)
  return trainer.train_and_evaluate(config, directory)


def _train_together(configs: dict, method: str, seeds: list[int], workdir: str) -> dict:
  """``{seed: results}`` of ``seeds`` trained in one program, each also written as its
  one-seed run's results.json (the config of that run, so later comparisons find it)."""
  from dynamos_jax import reporting, trainer

  config = configs[method, seeds[0]].copy_and_resolve_references()
  config.seeds = ",".join(map(str, seeds))
  directory = os.path.join(workdir, method, "seeds_" + "_".join(map(str, seeds)))
  print(
    f"== {method}, seeds {config.seeds} in one program: training in {directory}", file=sys.stderr
  )
  together = trainer.train_and_evaluate(config, directory)
  out = {}
  for run in together["runs"]:
    seed = run["seed"]
    results = {
      "config": configs[method, seed].to_dict(),
      **{k: v for k, v in run.items() if k != "seed"},
      "train": {**together["train"], "trained_in": directory},
    }
    os.makedirs(run_dir(workdir, method, seed), exist_ok=True)
    reporting.write_results(results, run_dir(workdir, method, seed))
    out[seed] = results
  return out


def summarize(runs: dict[str, dict[int, dict]]) -> dict:
  """``{method: metrics.over_seeds(its runs in seed order)}``.

  Args:
    runs: ``{method: {seed: results}}``, results as in results.json.
  """
  from dynamos_jax import metrics

  return {
    method: metrics.over_seeds([by_seed[s] for s in sorted(by_seed)])
    for method, by_seed in runs.items()
  }


def run_comparison(
  config, methods: list[str], seeds: list[int], workdir: str, one_program: bool = True
) -> dict:
  """Trains what is missing, then writes and returns the comparison."""
  from dynamos_jax import config as config_lib

  if str(config.seeds).strip():
    raise InputError("compare takes its seeds from --seeds=0,1,2; drop --config.seeds")
  if str(config.sweep).strip():
    raise InputError(
      "compare compares methods; a sweep of one method's settings prints its "
      "own table: python -m dynamos_jax.run --config.sweep=... (docs/running.md#sweeps)"
    )
  configs = {}
  for method in methods:  # Check everything before training anything.
    for seed in seeds:
      c = config.copy_and_resolve_references()
      c.method, c.seed = method, seed
      config_lib.validate(c)
      configs[method, seed] = c
  # Its directory of runs is the comparison's while it trains and writes there; each run
  # it trains locks its own directory too (train_and_evaluate).
  with workdir_lock.hold(workdir):
    return _compare(configs, methods, seeds, workdir, one_program, config)


def _compare(
  configs: dict, methods: list[str], seeds: list[int], workdir: str, one_program: bool, config
) -> dict:
  runs = {m: {} for m in methods}
  for method in methods:
    missing = []
    for seed in seeds:
      directory = run_dir(workdir, method, seed)
      results = _finished(configs[method, seed], directory)
      if results is None:
        missing.append(seed)
      else:
        print(f"== {method}, seed {seed}: done earlier ({directory})", file=sys.stderr)
        runs[method][seed] = results
    if one_program and len(missing) > 1:
      runs[method].update(_train_together(configs, method, missing, workdir))
    else:
      for seed in missing:
        runs[method][seed] = _train_alone(configs[method, seed], run_dir(workdir, method, seed))
    runs[method] = dict(sorted(runs[method].items()))
  summary = summarize(runs)
  comparison = {
    "methods": methods,
    "seeds": seeds,
    "config": config.to_dict(),
    "summary": summary,
    "runs": {
      m: {
        str(s): {
          "workdir": run_dir(workdir, m, s),
          **{k: r[k] for k in ("metrics", "class_il", "task_il", "gcl", "train") if k in r},
        }
        for s, r in by_seed.items()
      }
      for m, by_seed in runs.items()
    },
  }
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "comparison.json")
  with open(path + ".tmp", "w") as f:
    json.dump(comparison, f, indent=1)
  os.replace(path + ".tmp", path)
  chart = plot_comparison(summary, runs, os.path.join(workdir, "comparison.png"))
  print(format_summary(summary, seeds))
  print(f"comparison in {path}, chart in {chart}")
  return comparison


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}")
  if CONFIG.value is None:
    fail("--config is required, e.g. --config=configs/seq_mnist.py:500")
  if WORKDIR.value is None:
    fail("--workdir is required: the directory that holds one subdirectory per run")
  if not _METHODS.value:
    fail("--methods is required, e.g. --methods=sgd,baseline,dynamos")
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    fail(f"--seeds must be integers separated by commas (got {','.join(_SEEDS.value)})")
  if len(set(_METHODS.value)) != len(_METHODS.value) or len(set(seeds)) != len(seeds):
    fail("--methods and --seeds must not repeat an entry")
  logging.set_verbosity(logging.WARNING)
  from dynamos_jax import parallel, trainer

  try:
    if str(CONFIG.value.seeds).strip():
      fail("compare takes its seeds from --seeds=0,1,2; drop --config.seeds")
    parallel.start(CONFIG.value)  # host devices and multi-host, as run does
    run_comparison(CONFIG.value, list(_METHODS.value), seeds, WORKDIR.value, _ONE_PROGRAM.value)
  except trainer.Interrupted as e:
    print(str(e) + " (the comparison resumes too: run it again)", file=sys.stderr)
    sys.exit(e.exit_code)
  except InputError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
