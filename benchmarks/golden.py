"""Golden outputs: record a set of short runs, or check the code still gives them bit for bit.

  python benchmarks/golden.py record --out=golden.json [--steps=60]
  python benchmarks/golden.py check golden.json

Each run is a config with a step budget per task (``runs``): every method on
the quick-start config with the agents' Flax layers (``model.agent_moments``
off), one two-seed run, and one MNIST-360 (one-task) smoke run. What is kept
per run: the accuracy matrices (or the GCL accuracy), every logged metric,
and a SHA-256 of each array of the final checkpoint (parameters,
BatchNorm statistics, optimiser state, buffer, key). ``check`` re-runs what
the file recorded and names every difference. Floats differ between CPU kinds
(XLA picks other kernels per instruction set) and between backends, so
compare on the kind of machine that recorded: the file records the CPU's
model and vector extensions, jax's version, the backend and (off CPU) the
device kind (``machine``).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("sgd", "joint", "baseline", "dynamos", "dynamos_nobuffer", "er", "derpp")
# The file layout ``record`` writes. 1 (no "format" key): every run had
# model.agent_moments forced off by the harness and the machine had no "backend"
# (all were recorded on CPU); ``upgrade`` reads such a file as format 2.
FORMAT = 2
# The quick-start runs pin the agents' plain Flax layers (model.agent_moments
# off, the default until 2026-12-01), the step they were first recorded with.
FLAX_AGENTS = {"model.agent_moments": False}


def machine() -> dict:
  """What decides the floats: CPU model and vector extensions, jax/jaxlib versions, the
  backend and, off CPU, the device kind (a GPU host's CPU may match a CPU recording)."""
  import jax
  import jaxlib
  flags = set()
  model = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  isa = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
  out = {"cpu": model, "isa": isa, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
         "backend": jax.default_backend()}
  if out["backend"] != "cpu":
    out["device"] = jax.devices()[0].device_kind
  return out


def upgrade(recorded: dict) -> dict:
  """A golden file in format ``FORMAT`` (a copy; a newer format is refused). A format-1
  file gets what it left implicit: its backend (cpu) and the model.agent_moments
  override the harness then forced on every run."""
  version = recorded.get("format", 1)
  if version > FORMAT:
    raise ValueError(f"golden file format {version} is newer than this harness's {FORMAT}")
  out = json.loads(json.dumps(recorded))
  if version == 1:
    out["machine"].setdefault("backend", "cpu")
    for run in out["runs"].values():
      run["overrides"] = {**FLAX_AGENTS, **run["overrides"]}
    out["format"] = FORMAT
  return out


def runs(steps: int, extra: dict | None = None) -> dict[str, dict]:
  """Name -> config overrides of every golden run (``config``: the file under configs/,
  default quickstart.py); ``extra`` applies to every run, last."""
  out = {m: {"method": m, **FLAX_AGENTS} for m in METHODS}
  out["dynamos_seeds_0_1"] = {"method": "dynamos", "seeds": "0,1",
                              "train.seed_strategy": "unroll", **FLAX_AGENTS}
  out["mnist360"] = {"config": "mnist360.py:100", "method": "dynamos", **FLAX_AGENTS}
  for overrides in out.values():
    overrides["train.max_steps_per_task"] = steps
    overrides.update(extra or {})
  return out


def parse_value(text: str):
  """A --set value as JSON when it parses (numbers, true/false), else the string."""
  try:
    return json.loads(text)
  except ValueError:
    return text


def load_config(overrides: dict):
  """The run's config: its file under configs/ with the bundled data, no progress bar, and
  ``overrides``."""
  import importlib.util
  name = overrides.get("config", "quickstart.py")
  path, _, arg = name.partition(":")
  spec = importlib.util.spec_from_file_location("golden_config",
                                                os.path.join(ROOT, "configs", path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.data.source = "bundled"
  config.train.progress = False
  for key, value in overrides.items():
    if key == "config":
      continue
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def checkpoint_digests(workdir: str) -> dict[str, str]:
  """SHA-256 of every array of the newest checkpoint, by its name in the checkpoint."""
  import numpy as np
  import orbax.checkpoint as ocp
  directory = os.path.join(workdir, "checkpoints")
  manager = ocp.CheckpointManager(directory, item_names=("state", "progress"))
  step = manager.latest_step()
  items = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  digests = {}
  for name, array in sorted(items["state"].items()):
    array = np.asarray(array)
    digests[name] = hashlib.sha256(f"{array.dtype}{array.shape}".encode()
                                   + np.ascontiguousarray(array).tobytes()).hexdigest()
  return digests


def record_one(overrides: dict) -> dict:
  from dynamos_jax import train
  config = load_config(overrides)
  with tempfile.TemporaryDirectory() as workdir:
    results = train.train_and_evaluate(config, workdir)
    digests = checkpoint_digests(workdir)
  per_seed = results["runs"] if "runs" in results else [results]
  keep = []
  for run in per_seed:
    entry = {"log": [{k: v for k, v in e.items()} for e in run["log"]]}
    if "gcl" in run:
      entry["gcl"] = run["gcl"]
    else:
      entry.update({p: {"matrix": run[p]["matrix"], "before": run[p]["before"]}
                    for p in ("class_il", "task_il")})
    keep.append(entry)
  return {"overrides": overrides, "runs": keep, "digests": digests}


def normalised(digests: dict[str, str]) -> dict[str, str]:
  """Array names without the state's container prefix, so a relayout of the state
  (e.g. the method's variables under one field) still compares array by array."""
  out = {}
  for name, digest in digests.items():
    parts = name.split(".")
    while parts and parts[0] in ("learner", "method", "state"):
      parts = parts[1:]
    out[".".join(parts)] = digest
  return out


def compare(name: str, want: dict, got: dict) -> list[str]:
  problems = []
  for i, (w, g) in enumerate(zip(want["runs"], got["runs"])):
    for key in w:
      if key == "log":
        for j, (a, b) in enumerate(zip(w["log"], g["log"])):
          diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
          if diff:
            problems.append(f"{name} run {i} log entry {j}: {diff}")
            break
      elif w[key] != g.get(key):
        problems.append(f"{name} run {i}: {key} differs")
  wd, gd = normalised(want["digests"]), normalised(got["digests"])
  for array in sorted(set(wd) & set(gd)):
    if wd[array] != gd[array]:
      problems.append(f"{name}: array {array} differs")
  # A relayout may drop or add arrays (e.g. a constant counter of an unused
  # buffer): reported, not counted as a difference in numbers.
  for array in sorted(set(wd) ^ set(gd)):
    print(f"  note: {name}: array {array} {'no longer saved' if array in wd else 'new'}")
  return problems


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  rec = sub.add_parser("record")
  rec.add_argument("--out", required=True)
  rec.add_argument("--steps", type=int, default=60)
  rec.add_argument("--only", default="", help="comma-separated run names (default: all)")
  rec.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run (e.g. model.nf=8)")
  chk = sub.add_parser("check")
  chk.add_argument("file")
  chk.add_argument("--only", default="")
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  from absl import logging
  logging.set_verbosity(logging.WARNING)

  if args.command == "record":
    todo = runs(args.steps, {k: parse_value(v) for k, v in
                             (item.split("=", 1) for item in args.set)})
    if args.only:
      todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    out = {"format": FORMAT, "machine": machine(), "steps": args.steps, "runs": {}}
    for name, overrides in todo.items():
      print(f"recording {name}", file=sys.stderr, flush=True)
      out["runs"][name] = record_one(overrides)
      with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0

  with open(args.file) as f:
    want = upgrade(json.load(f))
  if want["machine"] != machine():
    print(f"warning: recorded on {want['machine']}, this is {machine()}: floats may differ",
          file=sys.stderr)
  problems = []
  for name, run in want["runs"].items():
    if args.only and name not in args.only.split(","):
      continue
    print(f"checking {name}", file=sys.stderr, flush=True)
    got = record_one(run["overrides"])
    found = compare(name, run, got)
    print(f"{name}: {'identical' if not found else 'DIFFERS'}", flush=True)
    problems += found
  for p in problems:
    print("  " + p)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
