"""Training throughput at the paper's shapes: compile time, steps/s, images/s, FLOP/s.

  python benchmarks/throughput.py [--methods=dynamos,baseline] \
      [--benchmarks=seq-mnist,mnist-360,seq-svhn] [--strategies=loop,scan10,scan100] \
      [--seeds=1,2,4,8] [--seed_strategy=auto] [--host_devices=0] [--steps=200] [--repeats=3] \
      [--out=FILE.json]

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
one-step program and the achieved FLOP/s. Prints a table; ``--out`` writes JSON.
"""

import argparse
import functools
import json
import statistics
import sys
import time

import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from dynamos_jax import methods
from dynamos_jax import parallel
from dynamos_jax import runner as runner_lib
from dynamos_jax.config import base_config
from dynamos_jax.benchmarks.permuted_mnist import PermutedEpochData
from dynamos_jax.data import mnist360
from dynamos_jax.data.streams import EpochData
from dynamos_jax.methods import two_pass
from dynamos_jax.state import TrainState

# The paper's shapes (Table 5 and spec): image shape, batch size B (= replay B_M), buffer.
SHAPES = {
    "seq-mnist": dict(shape=(28, 28, 3), batch=10, buffer=500, rotate=False),
    "mnist-360": dict(shape=(28, 28, 3), batch=16, buffer=500, rotate=True),
    "seq-svhn": dict(shape=(32, 32, 3), batch=16, buffer=2000, rotate=False),
    # SLNI's demo: the 784-128-128-10 MLP at batch 200 (slni-spec 7), permuted inputs.
    "permuted-mnist": dict(shape=(28, 28, 3), batch=200, buffer=0, rotate=False, mlp=True),
}
# The benchmarks each method is measured on (the MLP methods on permuted MNIST only).
MLP_METHODS = ("slni",)
STRATEGIES = {"loop": ("loop", 1), "scan10": ("scan", 10), "scan100": ("scan", 100)}
POOL = 4000  # Synthetic training images per case.


def full_state(method, shape, buffer_size, seed):
  """A TrainState whose buffer (if the method has one) is full, as late in a run."""
  example = types.SimpleNamespace(images=jnp.zeros((2, *shape), jnp.uint8))
  learner = method.init(jax.random.key(seed), example, None)
  state = runner_lib.unaliased(TrainState(step=jnp.zeros((), jnp.int32),
                                          key=jax.random.key(seed + 1000), learner=learner))
  if getattr(learner, "buffer", None) is None:
    return state
  rng = np.random.default_rng(seed)
  buf = learner.buffer
  return state.replace(learner=learner.replace(buffer=buf.replace(
      images=jnp.asarray(rng.integers(0, 256, buf.images.shape, dtype=np.uint8)),
      labels=jnp.asarray(rng.integers(0, 10, buf.labels.shape, dtype=np.int32)),
      logits=jnp.asarray(rng.normal(size=buf.logits.shape).astype(np.float32)),
      attention=jnp.asarray(rng.normal(size=buf.attention.shape).astype(np.float32)),
      num_seen=jnp.int32(5 * buffer_size))))


def epoch_data(images, labels, batch, seeds, rotate, rng):
  """EpochData with each seed's own random batch order (and rotations for MNIST-360)."""
  rows = len(labels) // batch
  orders = np.stack([rng.permutation(rows * batch).reshape(rows, batch) for _ in range(seeds)])
  masks = np.ones(orders.shape, bool)
  rotation = None
  if rotate:
    degrees = rng.uniform(0, 360, orders.shape)
    rotation = mnist360.rotation_params(degrees.reshape(-1), *images.shape[1:3]).reshape(
        *orders.shape, 6)
  return orders, masks, rotation


def step_flops(step, state, data) -> float:
  """XLA's cost-analysis FLOPs of the one-step program (per device if sharded)."""
  cost = jax.jit(step).lower(state, data, np.int32(0)).compile().cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))


def run_case(method_name: str, benchmark: str, strategy: str, seeds: int, seed_strategy: str,
             steps: int, repeats: int, agent_moments: bool = False,
             parallel_passes: bool = False) -> dict:
  spec = SHAPES[benchmark]
  config = base_config()
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
  orders, masks, rotation = epoch_data(images, labels, spec["batch"], seeds, spec["rotate"],
                                        rng)
  example_shape = (*spec["shape"][:2], 1) if spec.get("mlp") else spec["shape"]
  states = [full_state(method, example_shape, spec["buffer"], s) for s in range(seeds)]
  # Permuted MNIST's batches gather through a pixel permutation, as in training.
  make_data = (functools.partial(PermutedEpochData, permutations=jnp.asarray(
      np.stack([rng.permutation(784) for _ in range(5)]), jnp.int32))
               if spec.get("mlp") else EpochData)
  if seeds == 1:  # The one-seed program of a plain run.
    mesh = None
    state = states[0]
    data = make_data(jnp.asarray(images), jnp.asarray(labels), jnp.asarray(orders[0]),
                     jnp.asarray(masks[0]), jnp.int32(1),
                     None if rotation is None else jnp.asarray(rotation[0]))
    if parallel_passes:  # The step's program spans two devices: its inputs live there.
      state, data = parallel.place((state, data), two_pass.pass_mesh(), P())
  else:
    mesh = parallel.seed_mesh(seeds)
    step = parallel.over_seeds(step, seed_strategy, mesh)
    state = parallel.place(parallel.stack(states), mesh, P(parallel.AXIS))
    shared = parallel.place((jnp.asarray(images), jnp.asarray(labels)), mesh, P())
    order, mask, rotation = parallel.place(
        (jnp.asarray(orders), jnp.asarray(masks),
         None if rotation is None else jnp.asarray(rotation)), mesh, P(parallel.AXIS))
    data = make_data(*shared, order, mask, parallel.place(jnp.int32(1), mesh, P()), rotation)
    if spec.get("mlp"):
      data = data.replace(permutations=parallel.place(
          jnp.stack([data.permutations] * seeds), mesh, P(parallel.AXIS)))
  rows = orders.shape[1]

  # FLOPs of one step (S seeds) from XLA's cost analysis of the one-step program.
  if parallel_passes:
    # The two-device program's analysis is per device (one pass plus the replicated
    # rest): count the work of the step from its one-device form instead.
    config.train.parallel_passes = False
    plain = runner_lib.make_train_step(
        methods.get_method(config, types.SimpleNamespace(num_classes=10, num_tasks=5)), "main")
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
  return {"method": method_name, "benchmark": benchmark, "strategy": strategy, "seeds": seeds,
          "agent_moments": agent_moments, "parallel_passes": parallel_passes,
          "seed_strategy": parallel.resolve_strategy(seed_strategy) if seeds > 1 else None,
          "devices": 1 if mesh is None else mesh.size,
          "batch": spec["batch"], "replay": spec["batch"] if getattr(method, "reservoir", None) else 0,
          "compile_seconds": compile_s, "steps_per_second": rate, "all_rates": rates,
          "stream_images_per_second": rate * spec["batch"] * seeds,
          "flops_per_step": flops, "flops_per_second": rate * flops}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default="dynamos,baseline")
  parser.add_argument("--benchmarks", default=",".join(SHAPES))
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--seeds", default="1,2,4,8")
  parser.add_argument("--seed_strategy", default="auto", choices=("auto", "vmap", "unroll"))
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--host_devices", type=int, default=0,
                      help="expose the CPU as this many devices (seeds sharded over them)")
  parser.add_argument("--agent_moments", action="store_true",
                      help="the agents from moments (config model.agent_moments)")
  parser.add_argument("--parallel_passes", action="store_true",
                      help="one seed's two passes on two devices (train.parallel_passes; "
                           "needs --host_devices=2 on a CPU)")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  try:
    seed_counts = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    sys.exit(f"error: --seeds must be integers separated by commas (got {args.seeds!r})")
  if min(seed_counts) < 1:
    sys.exit(f"error: --seeds counts must be >= 1 (got {args.seeds!r})")
  parallel.use_host_devices(args.host_devices)
  for name, choices, values in [("methods", methods.REGISTRY, args.methods),
                                ("benchmarks", SHAPES, args.benchmarks),
                                ("strategies", STRATEGIES, args.strategies)]:
    bad = [v for v in values.split(",") if v not in choices]
    if bad:
      sys.exit(f"error: unknown --{name} {bad}; choose from {', '.join(choices)}")
  device = jax.devices()[0]
  header = (f"device: {device.device_kind} ({jax.default_backend()}), "
            f"{jax.device_count()} device(s); jax {jax.__version__}")
  print(header)
  print(f"{'method':>9} {'benchmark':>10} {'chunks':>8} {'seeds':>5} {'dev':>3} "
        f"{'compile s':>9} {'steps/s':>8} {'images/s':>9} {'GFLOP/step':>10} {'GFLOP/s':>8}")
  cases = []
  for method_name in args.methods.split(","):
    for benchmark in args.benchmarks.split(","):
      if (method_name in MLP_METHODS) != bool(SHAPES[benchmark].get("mlp")):
        continue  # An MLP method on permuted MNIST; the ResNet methods on the others.
      for strategy in args.strategies.split(","):
        for seeds in seed_counts:
          r = run_case(method_name, benchmark, strategy, seeds, args.seed_strategy,
                       args.steps, args.repeats, args.agent_moments, args.parallel_passes)
          cases.append(r)
          print(f"{r['method']:>9} {r['benchmark']:>10} {r['strategy']:>8} {r['seeds']:>5} "
                f"{r['devices']:>3} {r['compile_seconds']:9.1f} {r['steps_per_second']:8.2f} "
                f"{r['stream_images_per_second']:9.0f} {r['flops_per_step'] / 1e9:10.2f} "
                f"{r['flops_per_second'] / 1e9:8.1f}", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"device": device.device_kind, "backend": jax.default_backend(),
                 "device_count": jax.device_count(), "jax": jax.__version__,
                 "steps": args.steps, "repeats": args.repeats, "cases": cases}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
