"""A sweep in one program against the same settings trained one after the other.

  python speed/sweep_vs_sequential.py [--config=configs/quickstart.py] \
      [--sweep="dynamos.alpha=0.1,0.2;dynamos.beta=1,2"] [--steps_per_task=40] \
      [--set=KEY=VALUE ...] [--out=FILE.json]

Trains every setting of ``--sweep`` alone (``train_and_evaluate`` of the
setting's config, one after the other, in this process), then all of them as
one sweep (``--config.sweep``), on a short run (``train.max_steps_per_task``).
Reports, for both: the training seconds without compilation (what
results.json's ``train.seconds`` counts), the compile seconds, and the wall
time (data, evaluation and checkpoints included); the speedup of the sweep;
and whether each member's accuracy matrices equal its setting's run alone
(they must, bit for bit, under ``unroll``, the CPU default). The machine
(``lscpu``'s model name, the backend, the load average) is printed with them:
time on a shared machine is only comparable within one invocation.
"""

import argparse
import ast
import importlib.util
import json
import os
import subprocess
import tempfile
import time

import jax

from dynamos_jax import parallel, trainer
from dynamos_jax import sweep as sweep_lib


def load_config(path: str):
  """A configs/*.py file (``PATH[:ARG]``) as the run would load it."""
  path, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def override(config, assignment: str) -> None:
  key, _, text = assignment.partition("=")
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  node[leaf] = type(node[leaf])(value)


def machine() -> dict:
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
      l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")
    )
  except (OSError, StopIteration):
    model = "unknown"
  return {
    "cpu": model,
    "cores": os.cpu_count(),
    "backend": jax.default_backend(),
    "devices": jax.device_count(),
    "load_average": list(os.getloadavg()),
  }


def timed(config, workdir: str) -> tuple[dict, float]:
  t0 = time.perf_counter()
  results = trainer.train_and_evaluate(config, workdir)
  return results, time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--sweep", default="dynamos.alpha=0.1,0.2;dynamos.beta=1,2")
  parser.add_argument("--steps_per_task", type=int, default=40)
  parser.add_argument("--set", action="append", default=[], help="KEY=VALUE config override")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = load_config(args.config)
  config.train.max_steps_per_task = args.steps_per_task
  config.train.progress = False
  for assignment in args.set:
    override(config, assignment)
  parallel.start(config)
  config.sweep = args.sweep
  sweep = sweep_lib.validate(config)
  print(f"machine: {machine()}", flush=True)
  root = tempfile.mkdtemp(prefix="sweep_bench_")

  sequential, alone = {"seconds": 0.0, "compile_seconds": 0.0, "wall": 0.0}, {}
  for setting in sweep.settings:
    label = sweep.label(setting)
    results, wall = timed(
      sweep_lib.setting_config(config, setting), os.path.join(root, "sequential", label)
    )
    alone[label] = results
    sequential["seconds"] += results["train"]["seconds"]
    sequential["compile_seconds"] += results["train"]["compile_seconds"]
    sequential["wall"] += wall
    print(
      f"alone {label}: train {results['train']['seconds']:.1f} s, compile "
      f"{results['train']['compile_seconds']:.1f} s, wall {wall:.1f} s",
      flush=True,
    )

  together, wall = timed(config, os.path.join(root, "sweep"))
  swept = {
    "seconds": together["train"]["seconds"],
    "compile_seconds": together["train"]["compile_seconds"],
    "wall": wall,
    "seed_strategy": together["train"]["seed_strategy"],
  }
  identical = {}
  for run in together["runs"]:
    mine, theirs = run, alone[run["label"]]
    identical[run["label"]] = all(
      mine[p]["matrix"] == theirs[p]["matrix"] for p in ("class_il", "task_il") if p in mine
    )
  report = {
    "machine": machine(),
    "config": args.config,
    "sweep": args.sweep,
    "settings": len(sweep.settings),
    "steps_per_member": together["train"]["steps"],
    "sequential": sequential,
    "sweep_run": swept,
    "speedup_train": sequential["seconds"] / max(swept["seconds"], 1e-9),
    "speedup_wall": sequential["wall"] / max(swept["wall"], 1e-9),
    "members_equal_alone": identical,
    # None without a validation split or train.rank_on=test (docs/running.md#sweeps).
    "best": together["sweep"].get("best"),
  }
  print(json.dumps(report, indent=1))
  print(
    f"{len(sweep.settings)} settings x {together['train']['steps']} steps: one after the "
    f"other {sequential['seconds']:.1f} s training + {sequential['compile_seconds']:.1f} s "
    f"compile ({sequential['wall']:.1f} s wall); one sweep ({swept['seed_strategy']}) "
    f"{swept['seconds']:.1f} s + {swept['compile_seconds']:.1f} s ({swept['wall']:.1f} s "
    f"wall): {report['speedup_train']:.2f}x training, {report['speedup_wall']:.2f}x wall; "
    f"members equal their settings alone: {all(identical.values())}"
  )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
