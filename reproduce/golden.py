"""Golden outputs: record a set of short runs, or check the code still gives them bit for bit.

  python reproduce/golden.py record --out=golden.json [--steps=60]
  python reproduce/golden.py check golden.json

Each run is a config with a step budget per task (``runs``): every method on
the quick-start config with the agents' Flax layers (``model.agent_moments``
off), Dynamos's default step (agents from moments), one two-seed run, one
MNIST-360 (one-task) smoke run, SLNI on Permuted MNIST, and DGMw and DGMa on
the one-class MNIST splits. What is kept per run: the accuracy matrices (or
the GCL accuracy), every logged metric, the method's own results (where it
has any), and a SHA-256 of each array of the final checkpoint (parameters,
BatchNorm statistics, optimiser state, buffer, key). ``check`` re-runs what
the file recorded and names every difference. Floats differ between CPU kinds
(XLA picks other kernels per instruction set) and between backends, so
compare on the kind of machine that recorded: the file records the CPU's
model and vector extensions, jax's version, the backend, the CPU convolution
kernels (``dynamos_jax.cpu_kernels``) and (off CPU) the device kind (``machine``);
``check`` runs under the recorded kernels.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("sgd", "joint", "baseline", "dynamos", "dynamos_nobuffer", "er", "derpp")
# The file layout ``record`` writes. 1 (no "format" key): every run had
# model.agent_moments forced off by the harness and the machine had no "backend"
# (all were recorded on CPU); ``upgrade`` reads such a file as format 2.
FORMAT = 2
# Run -> array a format-1 file holds that the state no longer saves: the reservoir
# counter of the runs without a buffer, which the state has not carried since the
# method lifecycle (93ea603). ``upgrade`` drops it there if it is int32 0 (as in every
# file recorded); a run with a buffer still saves it, 0 or not (mnist360's is 0).
UNSAVED_ZEROS = {run: "buffer.num_seen" for run in ("sgd", "joint", "dynamos_nobuffer")}
# The quick-start runs pin the agents' plain Flax layers (model.agent_moments
# off, the default until 2026-12-01), the step they were first recorded with.
FLAX_AGENTS = {"model.agent_moments": False}
# DGM at the widths of tests/test_dgm.py on the first two of dgm-mnist's ten tasks
# (``DGM_TASKS``): its step is compiled again for every task (the replay and the D
# step's chunks grow with t), over 10 s a task at these widths under the tests' JAX
# settings on a 2-core CPU, and dgm_quick.py's own widths (ngf 6/20, ndf 16, nz 128,
# batch 32) take minutes. Two tasks run every part of DGM once: task 1 replays task
# 0's class from G after the masks were binarised, G grown and D re-initialised.
DGM_TASKS = "golden-dgm-mnist-2"
DGM_TINY = {"dataset": DGM_TASKS, "dgm.ngf": 2, "dgm.ndf": 4, "dgm.nz": 16, "batch_size": 4}


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
  out = {
    "cpu": model,
    "isa": isa,
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
  }
  if out["backend"] != "cpu":
    out["device"] = jax.devices()[0].device_kind
  else:
    from dynamos_jax import cpu_kernels

    out["cpu_convolutions"] = cpu_kernels.in_use()
  return out


def upgrade(recorded: dict) -> dict:
  """A golden file in format ``FORMAT`` (a copy; a newer format is refused). A CPU
  recording without ``cpu_convolutions`` ran YNNPACK's. A format-1
  file gets what it left implicit, its backend (cpu) and the model.agent_moments
  override the harness then forced on every run, and loses its ``UNSAVED_ZEROS``."""
  version = recorded.get("format", 1)
  if version > FORMAT:
    raise ValueError(f"golden file format {version} is newer than this harness's {FORMAT}")
  import numpy as np

  out = json.loads(json.dumps(recorded))
  if out["machine"].get("backend", "cpu") == "cpu":
    # Recorded before dynamos_jax chose Eigen's convolutions: XLA's default, YNNPACK's.
    out["machine"].setdefault("cpu_convolutions", "ynnpack")
  if version == 1:
    out["machine"].setdefault("backend", "cpu")
    zero = digest(np.int32(0))
    for run_name, run in out["runs"].items():
      run["overrides"] = {**FLAX_AGENTS, **run["overrides"]}
      run["digests"] = {
        name: d
        for name, d in run["digests"].items()
        if not (d == zero and array_name(name) == UNSAVED_ZEROS.get(run_name))
      }
    out["format"] = FORMAT
  return out


def runs(steps: int, extra: dict | None = None) -> dict[str, dict]:
  """Name -> config overrides of every golden run (``config``: the file under configs/,
  default quickstart.py); ``extra`` applies to every run, last."""
  out = {m: {"method": m, **FLAX_AGENTS} for m in METHODS}
  out["dynamos_seeds_0_1"] = {
    "method": "dynamos",
    "seeds": "0,1",
    "train.seed_strategy": "unroll",
    **FLAX_AGENTS,
  }
  out["mnist360"] = {"config": "mnist360.py:100", "method": "dynamos", **FLAX_AGENTS}
  # The step a Dynamos run takes by default (agents from moments).
  out["dynamos_default"] = {"method": "dynamos"}
  # The authors' MAS demo at the sweep's narrowest width (784-8-8-10).
  out["slni"] = {"config": "permuted_mnist.py:mas8"}
  for variant in ("dgmw", "dgma"):
    out[variant] = {"config": f"dgm_quick.py:{variant}", **DGM_TINY}
  for overrides in out.values():
    overrides["train.max_steps_per_task"] = steps
    overrides.update(extra or {})
  return out


def register_benchmarks() -> None:
  """Registers the harness's own benchmarks (``DGM_TASKS``) with the package, once."""
  from dynamos_jax import benchmarks
  from dynamos_jax.benchmarks.one_class import OneClassMNIST

  if DGM_TASKS in benchmarks.REGISTRY:
    return

  @benchmarks.register
  class FirstTwoDigits(OneClassMNIST):  # pylint: disable=unused-variable
    """dgm-mnist's first two one-class tasks (digits 0 and 1); the test set has all ten."""

    name = DGM_TASKS
    num_tasks = 2


def parse_value(text: str):
  """A --set value as JSON when it parses (numbers, true/false), else the string."""
  try:
    return json.loads(text)
  except ValueError:
    return text


def load_config(overrides: dict):
  """The run's config: its file under configs/ with the bundled data, no progress bar, and
  ``overrides`` (a key the config does not have is an error, not a new key)."""
  import importlib.util

  register_benchmarks()
  name = overrides.get("config", "quickstart.py")
  path, _, arg = name.partition(":")
  spec = importlib.util.spec_from_file_location(
    "golden_config", os.path.join(ROOT, "configs", path)
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.data.source = "bundled"
  config.train.progress = False
  # Every config starts from base_config(), so the keys --set applies to every run
  # (model.nf, ...) exist in all of them, whether or not the method reads them.
  for key, value in overrides.items():
    if key == "config":
      continue
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"{overrides.get('config', 'quickstart.py')} has no key {key}")
    node[leaf] = value
  return config


def checkpoint_digests(workdir: str) -> dict[str, str]:
  """``digest`` of every array of the newest checkpoint, by its name in the checkpoint.

  The checkpoint holds every leaf of the state (whatever the method: a DGM state's
  G, D, masks and Adam states too) except the zero-size ones, which hold no number.
  """
  import orbax.checkpoint as ocp

  directory = os.path.join(workdir, "checkpoints")
  manager = ocp.CheckpointManager(directory, item_names=("state", "progress"))
  step = manager.latest_step()
  items = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return {name: digest(array) for name, array in sorted(items["state"].items())}


def digest(array) -> str:
  """SHA-256 of an array's dtype, shape and bytes."""
  import numpy as np

  array = np.asarray(array)
  return hashlib.sha256(
    f"{array.dtype}{array.shape}".encode() + np.ascontiguousarray(array).tobytes()
  ).hexdigest()


def record_one(overrides: dict) -> dict:
  from dynamos_jax import trainer

  config = load_config(overrides)
  with tempfile.TemporaryDirectory() as workdir:
    results = trainer.train_and_evaluate(config, workdir)
    digests = checkpoint_digests(workdir)
  per_seed = results["runs"] if "runs" in results else [results]
  keep = []
  for run in per_seed:
    entry = {"log": [{k: v for k, v in e.items()} for e in run["log"]]}
    if "gcl" in run:
      entry["gcl"] = run["gcl"]
    else:
      entry.update(
        {
          p: {"matrix": run[p]["matrix"], "before": run[p]["before"]}
          for p in ("class_il", "task_il")
        }
      )
    if "method" in run:  # Method.results (e.g. DGM's best_valid report)
      entry["method"] = run["method"]
    keep.append(entry)
  return {"overrides": overrides, "runs": keep, "digests": digests}


def array_name(name: str) -> str:
  """A checkpoint array's name without the state's container prefix (``learner.``,
  ``method.``, ``state.``)."""
  parts = name.split(".")
  while parts and parts[0] in ("learner", "method", "state"):
    parts = parts[1:]
  return ".".join(parts)


def normalised(digests: dict[str, str]) -> dict[str, str]:
  """Digests by ``array_name``, so a relayout of the state (e.g. the method's variables
  under one field) still compares array by array."""
  return {array_name(name): d for name, d in digests.items()}


def compare(name: str, want: dict, got: dict) -> list[str]:
  """Every difference between a recorded run (``want``) and a new one (``got``), one line
  each; empty when they are equal. Strict: a run, log entry, result or array on one side
  only is a difference (a truncated result must not pass as the recorded one's prefix)."""
  problems = []
  if len(want["runs"]) != len(got["runs"]):
    problems.append(f"{name}: {len(want['runs'])} runs recorded, {len(got['runs'])} now")
  for i, (w, g) in enumerate(zip(want["runs"], got["runs"])):
    for key in sorted(set(w) | set(g)):
      if key not in g or key not in w:
        problems.append(f"{name} run {i}: {key} {'missing' if key in w else 'not recorded'}")
      elif key == "log":
        if len(w["log"]) != len(g["log"]):
          problems.append(
            f"{name} run {i}: {len(w['log'])} log entries recorded, {len(g['log'])} now"
          )
        for j, (a, b) in enumerate(zip(w["log"], g["log"])):
          diff = sorted(k for k in set(a) | set(b) if k not in a or k not in b or a[k] != b[k])
          if diff:
            problems.append(f"{name} run {i} log entry {j}: {diff}")
            break
      elif w[key] != g[key]:
        problems.append(f"{name} run {i}: {key} differs")
  # By name without the state's container prefix (``normalised``): a relayout of the
  # state compares array by array, and one that drops or adds an array is a difference.
  wd, gd = normalised(want["digests"]), normalised(got["digests"])
  for array in sorted(set(wd) | set(gd)):
    if array not in gd:
      problems.append(f"{name}: array {array} no longer saved")
    elif array not in wd:
      problems.append(f"{name}: array {array} not recorded")
    elif wd[array] != gd[array]:
      problems.append(f"{name}: array {array} differs")
  return problems


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  rec = sub.add_parser("record")
  rec.add_argument("--out", required=True)
  rec.add_argument("--steps", type=int, default=60)
  rec.add_argument("--only", default="", help="comma-separated run names (default: all)")
  rec.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a config override for every run (e.g. model.nf=8)",
  )
  chk = sub.add_parser("check")
  chk.add_argument("file")
  chk.add_argument("--only", default="")
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  from absl import logging

  import dynamos_jax  # noqa: F401  (chooses XLA:CPU's kernels, before anything starts JAX)

  logging.set_verbosity(logging.WARNING)

  if args.command == "record":
    todo = runs(
      args.steps, {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    )
    if args.only:
      todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    out = {"format": FORMAT, "machine": machine(), "steps": args.steps, "runs": {}}
    for name, overrides in todo.items():
      print(f"recording {name}", file=sys.stderr, flush=True)
      start = time.perf_counter()
      out["runs"][name] = record_one(overrides)
      print(f"{name}: recorded in {time.perf_counter() - start:.0f} s", flush=True)
      with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0

  with open(args.file) as f:
    want = upgrade(json.load(f))
  from dynamos_jax import cpu_kernels

  if want["machine"].get("cpu_convolutions") in cpu_kernels.CHOICES:  # before JAX starts
    os.environ[cpu_kernels.ENV] = want["machine"]["cpu_convolutions"]
    cpu_kernels.configure()
  if want["machine"] != machine():
    print(
      f"warning: recorded on {want['machine']}, this is {machine()}: floats may differ",
      file=sys.stderr,
    )
  problems = []
  for name, run in want["runs"].items():
    if args.only and name not in args.only.split(","):
      continue
    print(f"checking {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    got = record_one(run["overrides"])
    found = compare(name, run, got)
    print(
      f"{name}: {'identical' if not found else 'DIFFERS'} ({time.perf_counter() - start:.0f} s)",
      flush=True,
    )
    problems += found
  for p in problems:
    print("  " + p)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
