"""The Dynamos step's speed options side by side, interleaved: plain, moments, two devices, both.

  python speed/step_variants.py [--rounds=3] [--steps=100] [--repeats=3] \
      [--benchmark=seq-mnist] [--variants=plain,moments,passes,both] [--out=FILE.json]

Each variant is one ``speed/throughput.py`` process (a process's host
device count is fixed when JAX starts): ``plain`` the agents' Flax layers
(``--no-agent_moments``) in a one-device process; ``moments`` the default
step (agents from moments); ``passes`` the plain step with
``--parallel_passes --host_devices=2``; ``both`` moments and passes. A round
runs every variant once, the order rotated from round to round, so that the
load of a shared machine falls on all variants alike. Printed per variant:
the median over rounds of steps/s and compile seconds, every round's
steps/s, and the load average (1 min) seen around its runs; the CPU is named.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {
  "plain": ["--no-agent_moments"],
  "moments": [],
  "passes": ["--no-agent_moments", "--parallel_passes", "--host_devices=2"],
  "both": ["--parallel_passes", "--host_devices=2"],
}


def cpu_name() -> str:
  out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
  return next(
    (l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "unknown"
  )


def run_variant(name: str, args) -> dict:
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    out = f.name
  load_before = os.getloadavg()[0]
  cmd = [
    sys.executable,
    os.path.join(HERE, "throughput.py"),
    "--methods=dynamos",
    f"--benchmarks={args.benchmark}",
    "--strategies=loop",
    "--seeds=1",
    f"--steps={args.steps}",
    f"--repeats={args.repeats}",
    f"--out={out}",
    *VARIANTS[name],
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    sys.exit(f"error: {name} failed:\n{proc.stderr[-2000:]}")
  with open(out) as f:
    case = json.load(f)["cases"][0]
  os.unlink(out)
  return {
    "steps_per_second": case["steps_per_second"],
    "compile_seconds": case["compile_seconds"],
    "flops_per_step": case["flops_per_step"],
    "load": [load_before, os.getloadavg()[0]],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--benchmark", default="seq-mnist")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  names = args.variants.split(",")
  bad = [n for n in names if n not in VARIANTS]
  if bad:
    sys.exit(f"error: unknown --variants {bad}; choose from {', '.join(VARIANTS)}")
  runs = {n: [] for n in names}
  for r in range(args.rounds):
    for n in names[r % len(names) :] + names[: r % len(names)]:
      runs[n].append(run_variant(n, args))
      print(
        f"round {r + 1} {n:>8}: {runs[n][-1]['steps_per_second']:.2f} steps/s, "
        f"load {runs[n][-1]['load'][0]:.1f}",
        flush=True,
      )
  print(
    f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; Dynamos {args.benchmark} step, "
    f"{args.rounds} rounds of {args.repeats} x {args.steps} steps"
  )
  base = statistics.median(x["steps_per_second"] for x in runs[names[0]])
  print(f"{'variant':>8} {'steps/s':>8} {'vs ' + names[0]:>9} {'compile s':>9} {'load':>9}  rounds")
  for n in names:
    rate = statistics.median(x["steps_per_second"] for x in runs[n])
    loads = [l for x in runs[n] for l in x["load"]]
    print(
      f"{n:>8} {rate:8.2f} {rate / base:8.2f}x "
      f"{statistics.median(x['compile_seconds'] for x in runs[n]):9.1f} "
      f"{min(loads):4.1f}-{max(loads):<4.1f}  "
      + " ".join(f"{x['steps_per_second']:.2f}" for x in runs[n])
    )
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"cpu": cpu_name(), "args": vars(args), "runs": runs}, f, indent=1)


if __name__ == "__main__":
  main()
