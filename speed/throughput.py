"""Training throughput at the paper's shapes: compile time, steps/s, images/s, FLOP/s.

  python speed/throughput.py [--methods=dynamos,dynamos_nobuffer,baseline,er,derpp,sgd,\
      slni,dgm] [--benchmarks=seq-mnist,mnist-360,seq-svhn,permuted-mnist,dgm-mnist] \
      [--strategies=loop,scan10,scan100] [--seeds=1,2,4,8] [--seed_strategy=auto] \
      [--host_devices=0] [--no-agent_moments] [--parallel_passes] [--dgm_tasks=1,10] \
      [--peak_gflops=0] [--steps=200] [--repeats=3] [--tiny] [--out=FILE.json]

Every case trains the real step (the library's make_train_step, lifted to S
seeds by parallel.over_seeds and sharded over the devices like a run) on
synthetic uint8 images of the benchmark's shape, with a full buffer (every
slot written, the reservoir counter past capacity), so replay and insertion
run at full cost. The chunk runner is the training loop's own: ``loop`` calls
the jitted step once per step, ``scanN`` runs N steps per call in a
``lax.scan``; both sync with the host once per chunk, as in training.

Reported per case: compile seconds (the first chunk's compilation, apart),
steady-state steps/s (median of ``--repeats`` timed runs of ``--steps`` steps
after a warm-up chunk, each ended by block_until_ready), stream images/s
(steps/s x batch x seeds), the step's FLOPs from XLA's cost analysis of the
one-step program, the achieved FLOP/s and its fraction of the machine's peak
(``--peak_gflops``, or measured: XLA's best 2048 x 2048 float32 matmul, which
uses every core; the cores x clock x 32 FLOP/cycle figure is printed beside
it). Each method runs on its kind of benchmark: the ResNet methods on the
image shapes, SLNI's MLP on permuted MNIST, DGM's iteration on ``dgm-mnist``
(speed/dgm_step.py's setup, at ``--dgm_tasks``; one seed, no chunk
strategies). Prints a table; ``--out`` writes JSON.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import types

import dgm_step  # The DGM iteration's setup and timing (speed/dgm_step.py).
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from dynamos_jax import chunks as runner_lib
from dynamos_jax import cpu_kernels, methods, parallel
from dynamos_jax.benchmarks.permuted_mnist import PermutedEpochData
from dynamos_jax.config import base_config
from dynamos_jax.data import mnist360
from dynamos_jax.data.streams import EpochData
from dynamos_jax.methods.dynamos import two_pass
from dynamos_jax.state import TrainState

# The paper's shapes (Table 5, docs/dynamos.md#hyperparameters): image shape, batch size B
# (= replay B_M), buffer.
SHAPES = {
  "seq-mnist": dict(shape=(28, 28, 3), batch=10, buffer=500, rotate=False),
  "mnist-360": dict(shape=(28, 28, 3), batch=16, buffer=500, rotate=True),
  "seq-svhn": dict(shape=(32, 32, 3), batch=16, buffer=2000, rotate=False),
  # SLNI's demo: the 784-128-128-10 MLP at batch 200 (docs/slni.md#presets), permuted inputs.
  "permuted-mnist": dict(shape=(28, 28, 3), batch=200, buffer=0, rotate=False, mlp=True),
  # One DGM iteration at MNIST shapes (32x32x1, batch 64): speed/dgm_step.py's.
  "dgm-mnist": dict(shape=(32, 32, 1), batch=dgm_step.BATCH, buffer=0, rotate=False, dgm=True),
}
# --tiny: the same programs at toy sizes (tests/scripts/test_throughput.py), not for timing.
TINY = {
  "seq-mnist": dict(shape=(8, 8, 3), batch=2, buffer=8, rotate=False),
  "mnist-360": dict(shape=(8, 8, 3), batch=2, buffer=8, rotate=True),
  "seq-svhn": dict(shape=(8, 8, 3), batch=2, buffer=8, rotate=False),
  "permuted-mnist": dict(shape=(28, 28, 3), batch=4, buffer=0, rotate=False, mlp=True),
  "dgm-mnist": SHAPES["dgm-mnist"],
}
# The benchmarks each method is measured on: the MLP methods on permuted MNIST,
# DGM on its own shapes, the ResNet methods on the others. joint's step is sgd's
# (only its stream differs), dgm_joint's a DGM variant: both are left out by default.
MLP_METHODS = ("slni",)
DGM_METHODS = ("dgm",)
DEFAULT_METHODS = "dynamos,dynamos_nobuffer,baseline,er,derpp,sgd,slni,dgm"
# Assumed FP32 FLOP per cycle and core for the theoretical peak: two 256-bit FMA
# pipes (x86 with AVX2 or Zen 4's AVX-512, which issues 512-bit ops as two halves).
FLOP_PER_CYCLE = 32
STRATEGIES = {"loop": ("loop", 1), "scan10": ("scan", 10), "scan100": ("scan", 100)}
POOL = 4000  # Synthetic training images per case.


def full_state(method, shape, buffer_size, seed):
  """A TrainState whose buffer (if the method has one) is full, as late in a run."""
  example = types.SimpleNamespace(images=jnp.zeros((2, *shape), jnp.uint8))
  learner = method.init(jax.random.key(seed), example, None)
  state = runner_lib.unaliased(
    TrainState(step=jnp.zeros((), jnp.int32), key=jax.random.key(seed + 1000), learner=learner)
  )
  if getattr(learner, "buffer", None) is None:
    return state
  rng = np.random.default_rng(seed)
  buf = learner.buffer
  return state.replace(
    learner=learner.replace(
      buffer=buf.replace(
        images=jnp.asarray(rng.integers(0, 256, buf.images.shape, dtype=np.uint8)),
        labels=jnp.asarray(rng.integers(0, 10, buf.labels.shape, dtype=np.int32)),
        logits=jnp.asarray(rng.normal(size=buf.logits.shape).astype(np.float32)),
        attention=jnp.asarray(rng.normal(size=buf.attention.shape).astype(np.float32)),
        num_seen=jnp.int32(5 * buffer_size),
      )
    )
  )


def epoch_data(images, labels, batch, seeds, rotate, rng):
  """EpochData with each seed's own random batch order (and rotations for MNIST-360)."""
  rows = len(labels) // batch
  orders = np.stack([rng.permutation(rows * batch).reshape(rows, batch) for _ in range(seeds)])
  masks = np.ones(orders.shape, bool)
  rotation = None
  if rotate:
    degrees = rng.uniform(0, 360, orders.shape)
    rotation = mnist360.rotation_params(degrees.reshape(-1), *images.shape[1:3]).reshape(
      *orders.shape, 6
    )
  return orders, masks, rotation


def step_flops(step, state, data) -> float:
  """XLA's cost-analysis FLOPs of the one-step program (per device if sharded)."""
  cost = jax.jit(step).lower(state, data, np.int32(0)).compile().cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
  """FLOP/s of XLA's best [n, n] x [n, n] float32 matmul here (it uses every core)."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  dot = jax.jit(lambda a: a @ a)
  jax.block_until_ready(dot(x))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(dot(x))
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best


def theoretical_peak_flops() -> tuple[float, str]:
  """cores x clock x FLOP_PER_CYCLE from /proc/cpuinfo (nan where it says no clock)."""
  try:
    with open("/proc/cpuinfo") as f:
      mhz = [float(l.split(":")[1]) for l in f if l.startswith("cpu MHz")]
  except OSError:
    mhz = []
  if not mhz:
    return float("nan"), "no clock in /proc/cpuinfo"
  cores = os.cpu_count() or 1
  return (
    cores * max(mhz) * 1e6 * FLOP_PER_CYCLE,
    f"{cores} cores x {max(mhz):.0f} MHz x {FLOP_PER_CYCLE} FLOP/cycle",
  )


def cpu_name() -> str:
  out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
  return next(
    (l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "unknown"
  )


def run_dgm(task: int, steps: int, repeats: int) -> dict:
  """One DGMw iteration at task ``task`` (dgm_step.measure), as a throughput row."""
  r = dgm_step.measure("w", task, steps, repeats, dgm_step.TARGET["w"], "auto")
  rate, flops = r["iterations_per_s"], r["gflop_per_iteration"] * 1e9
  return {
    "method": "dgm",
    "benchmark": "dgm-mnist",
    "strategy": f"task{task}",
    "seeds": 1,
    "agent_moments": False,
    "parallel_passes": False,
    "seed_strategy": None,
    "devices": 1,
    "batch": dgm_step.BATCH,
    "replay": 0,
    "compile_seconds": r["compile_s"],
    "steps_per_second": rate,
    "all_rates": [rate],
    "stream_images_per_second": rate * dgm_step.BATCH,
    "flops_per_step": flops,
    "flops_per_second": rate * flops,
  }


def run_case(
  method_name: str,
  benchmark: str,
  strategy: str,
  seeds: int,
  seed_strategy: str,
  steps: int,
  repeats: int,
  agent_moments: bool = True,
  parallel_passes: bool = False,
  tiny: bool = False,
) -> dict:
  spec = (TINY if tiny else SHAPES)[benchmark]
  config = base_config()
  if tiny:
    config.model.nf, config.model.mlp_reduction = 8, 4
  config.method = method_name
  config.model.agent_moments = agent_moments
  config.train.parallel_passes = parallel_passes
  config.batch_size = config.minibatch_size = spec["batch"]
  config.buffer_size = spec["buffer"]
  if spec.get("mlp"):
    config.dataset = "permuted-mnist"
  method = methods.get_method(config, types.SimpleNamespace(num_classes=10, num_tasks=5))
  chunk_strategy, chunk = STRATEGIES[strategy]
  step = runner_lib.make_train_step(method, "main")

  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (POOL, *spec["shape"]), dtype=np.uint8)
  labels = rng.integers(0, 10, POOL, dtype=np.int32)
  orders, masks, rotation = epoch_data(images, labels, spec["batch"], seeds, spec["rotate"], rng)
  example_shape = (*spec["shape"][:2], 1) if spec.get("mlp") else spec["shape"]
  states = [full_state(method, example_shape, spec["buffer"], s) for s in range(seeds)]
  # Permuted MNIST's batches gather through a pixel permutation, as in training.
  make_data = (
    functools.partial(
      PermutedEpochData,
      permutations=jnp.asarray(np.stack([rng.permutation(784) for _ in range(5)]), jnp.int32),
    )
    if spec.get("mlp")
    else EpochData
  )
  if seeds == 1:  # The one-seed program of a plain run.
    mesh = None
    state = states[0]
    data = make_data(
      jnp.asarray(images),
      jnp.asarray(labels),
      jnp.asarray(orders[0]),
      jnp.asarray(masks[0]),
      jnp.int32(1),
      None if rotation is None else jnp.asarray(rotation[0]),
    )
    if parallel_passes:  # The step's program spans two devices: its inputs live there.
      state, data = parallel.place((state, data), two_pass.pass_mesh(), P())
  else:
    mesh = parallel.seed_mesh(seeds)
    step = parallel.over_seeds(step, seed_strategy, mesh)
    state = parallel.place(parallel.stack(states), mesh, P(parallel.AXIS))
    shared = parallel.place((jnp.asarray(images), jnp.asarray(labels)), mesh, P())
    order, mask, rotation = parallel.place(
      (
        jnp.asarray(orders),
        jnp.asarray(masks),
        None if rotation is None else jnp.asarray(rotation),
      ),
      mesh,
      P(parallel.AXIS),
    )
    data = make_data(*shared, order, mask, parallel.place(jnp.int32(1), mesh, P()), rotation)
    if spec.get("mlp"):
      data = data.replace(
        permutations=parallel.place(jnp.stack([data.permutations] * seeds), mesh, P(parallel.AXIS))
      )
  rows = orders.shape[1]

  # FLOPs of one step (S seeds) from XLA's cost analysis of the one-step program.
  if parallel_passes:
    # The two-device program's analysis is per device (one pass plus the replicated
    # rest): count the work of the step from its one-device form instead.
    config.train.parallel_passes = False
    plain = runner_lib.make_train_step(
      methods.get_method(config, types.SimpleNamespace(num_classes=10, num_tasks=5)), "main"
    )
    flops = step_flops(plain, states[0], jax.device_get(data))
  else:
    flops = step_flops(step, state, data) * (1 if mesh is None else mesh.size)

  runner = runner_lib.ChunkRunner(step, chunk_strategy, chunk)
  position = 0

  def run(n):
    nonlocal state, position
    for _ in range(n // chunk):
      if position + chunk > rows:
        position = 0
      state, _ = runner.run(state, data, position, position + chunk)
      position += chunk
    jax.block_until_ready(state)

  steps = max(chunk, steps // chunk * chunk)
  run(chunk)  # Compiles, then one chunk.
  compile_s = runner.compile_seconds
  run(chunk)  # Warm-up.
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run(steps)
    rates.append(steps / (time.perf_counter() - t0))
  rate = statistics.median(rates)
  return {
    "method": method_name,
    "benchmark": benchmark,
    "strategy": strategy,
    "seeds": seeds,
    "agent_moments": agent_moments,
    "parallel_passes": parallel_passes,
    "seed_strategy": parallel.resolve_strategy(seed_strategy) if seeds > 1 else None,
    "devices": 1 if mesh is None else mesh.size,
    "batch": spec["batch"],
    "replay": spec["batch"] if getattr(method, "reservoir", None) else 0,
    "compile_seconds": compile_s,
    "steps_per_second": rate,
    "all_rates": rates,
    "stream_images_per_second": rate * spec["batch"] * seeds,
    "flops_per_step": flops,
    "flops_per_second": rate * flops,
  }


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default=DEFAULT_METHODS)
  parser.add_argument("--benchmarks", default=",".join(SHAPES))
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--seeds", default="1,2,4,8")
  parser.add_argument("--seed_strategy", default="auto", choices=("auto", "vmap", "unroll"))
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument(
    "--host_devices",
    type=int,
    default=0,
    help="expose the CPU as this many devices (seeds sharded over them)",
  )
  parser.add_argument(
    "--agent_moments",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="the agents from moments (config model.agent_moments, on by "
    "default; --no-agent_moments: the plain Flax layers)",
  )
  parser.add_argument(
    "--parallel_passes",
    action="store_true",
    help="one seed's two passes on two devices (train.parallel_passes; "
    "needs --host_devices=2 on a CPU)",
  )
  parser.add_argument(
    "--dgm_tasks",
    default="1,10",
    help="the DGM iteration at these tasks (dgm_step.py fakes the later ones)",
  )
  parser.add_argument(
    "--peak_gflops",
    type=float,
    default=0.0,
    help="the machine's peak for the %%peak column (0: measure a matmul)",
  )
  parser.add_argument(
    "--tiny",
    action="store_true",
    help="toy shapes and widths: checks that every case runs (no timing)",
  )
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  try:
    seed_counts = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    sys.exit(f"error: --seeds must be integers separated by commas (got {args.seeds!r})")
  if min(seed_counts) < 1:
    sys.exit(f"error: --seeds counts must be >= 1 (got {args.seeds!r})")
  parallel.use_host_devices(args.host_devices)
  for name, choices, values in [
    ("methods", methods.REGISTRY, args.methods),
    ("benchmarks", SHAPES, args.benchmarks),
    ("strategies", STRATEGIES, args.strategies),
  ]:
    bad = [v for v in values.split(",") if v not in choices]
    if bad:
      sys.exit(f"error: unknown --{name} {bad}; choose from {', '.join(choices)}")
  if "dgm_joint" in args.methods.split(","):
    sys.exit(
      "error: dgm_joint's iteration is not measured here (speed/dgm_step.py "
      "measures DGM's); choose other --methods"
    )
  device = jax.devices()[0]
  peak = args.peak_gflops * 1e9 or matmul_peak_flops(512 if args.tiny else 2048)
  theory, how = theoretical_peak_flops()
  print(
    f"device: {device.device_kind} ({jax.default_backend()}), {jax.device_count()} "
    f"device(s); {cpu_name()}; jax {jax.__version__}; CPU convolutions: "
    f"{cpu_kernels.in_use()}"
  )
  print(
    f"peak: {peak / 1e9:.1f} GFLOP/s "
    f"({'given' if args.peak_gflops else 'measured: best float32 matmul'}); "
    f"theoretical {theory / 1e9:.1f} GFLOP/s ({how}); load {os.getloadavg()[0]:.1f}"
  )
  print(
    f"{'method':>16} {'benchmark':>14} {'chunks':>8} {'seeds':>5} {'dev':>3} "
    f"{'compile s':>9} {'steps/s':>8} {'images/s':>9} {'GFLOP/step':>10} {'GFLOP/s':>8} "
    f"{'%peak':>6}"
  )
  cases = []

  def report(r):
    r["peak_fraction"] = r["flops_per_second"] / peak
    cases.append(r)
    print(
      f"{r['method']:>16} {r['benchmark']:>14} {r['strategy']:>8} {r['seeds']:>5} "
      f"{r['devices']:>3} {r['compile_seconds']:9.1f} {r['steps_per_second']:8.2f} "
      f"{r['stream_images_per_second']:9.0f} {r['flops_per_step'] / 1e9:10.3f} "
      f"{r['flops_per_second'] / 1e9:8.1f} {100 * r['peak_fraction']:5.1f}%",
      flush=True,
    )

  for method_name in args.methods.split(","):
    for benchmark in args.benchmarks.split(","):
      spec = SHAPES[benchmark]
      if (method_name in MLP_METHODS) != bool(spec.get("mlp")) or (
        method_name in DGM_METHODS
      ) != bool(spec.get("dgm")):
        continue  # Each method on its own kind of benchmark (see MLP_METHODS).
      if spec.get("dgm"):  # One seed, its own jitted iteration (no chunk strategies).
        for task in args.dgm_tasks.split(","):
          report(run_dgm(int(task), 1 if args.tiny else args.steps, args.repeats))
        continue
      for strategy in args.strategies.split(","):
        for seeds in seed_counts:
          report(
            run_case(
              method_name,
              benchmark,
              strategy,
              seeds,
              args.seed_strategy,
              args.steps,
              args.repeats,
              args.agent_moments,
              args.parallel_passes,
              args.tiny,
            )
          )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(
        {
          "device": device.device_kind,
          "cpu": cpu_name(),
          "backend": jax.default_backend(),
          "cpu_convolutions": cpu_kernels.in_use(),
          "device_count": jax.device_count(),
          "jax": jax.__version__,
          "peak_flops_per_second": peak,
          "theoretical_peak": [theory, how],
          "load": os.getloadavg(),
          "steps": args.steps,
          "repeats": args.repeats,
          "cases": cases,
        },
        f,
        indent=1,
      )
    print(f"wrote {args.out}")
  return cases


if __name__ == "__main__":
  main()
