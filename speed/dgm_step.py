"""One DGM iteration at the MNIST shapes: compile seconds, steady-state iterations/s, FLOPs.

  python speed/dgm_step.py [--variant=w|a] [--tasks=1,10] [--steps=20] [--repeats=3] \
      [--out=FILE.json]

An iteration is the library's whole training step (chunks.make_train_step
around the dgm method's step, as the trainer jits it): t + 1 CE steps of D on
real + replayed images, the WGAN-GP step of D, the G step, and the replay of
t past classes generated inside the step (docs/dgm.md#training-loop). Shapes: 32x32x1,
batch 64, ngf 6 (DGMw) or 20 (DGMa), ndf 32, nz 128, N_t = 5 000 real images
of the task (synthetic uint8), the released MNIST hyperparameters.

Task t > 1 is faked: the state is set up as if t - 1 tasks had ended (t
seen classes, the replay of t - 1 of them) with a generator grown to
``--final_params`` masked weights by then (default: Table 3's 3.83e5 for
DGMw; for DGMa, Table 4's 14.0 MB of weights / 4 bytes = 3.5e6), its conv1-3
widths scaled by one factor from the start widths, and the growth spread
linearly over the tasks. The numbers are those of a real run's shapes, not
its values.

Reported per task: compile seconds of the step program, iterations/s (median
of ``--repeats`` timed runs of ``--steps`` steps after a warm-up), FLOPs of
one iteration from XLA's cost analysis, achieved FLOP/s, and the machine
(``lscpu``'s model name, the JAX backend and devices).
"""

import argparse
import json
import statistics
import subprocess
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import chunks, cpu_kernels
from dynamos_jax.config import base_config
from dynamos_jax.data.streams import Batch, EpochData
from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import shapes as dgm_shapes
from dynamos_jax.methods.dgm.dgm import DGM
from dynamos_jax.state import TrainState

SAMPLES = 5000
BATCH = 64
TARGET = {"w": 3.83e5, "a": 3.5e6}


def machine() -> dict:
  model = "unknown"
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
      (l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), model
    )
  except OSError:
    pass
  return {
    "cpu": model,
    "backend": jax.default_backend(),
    "cpu_convolutions": cpu_kernels.in_use(),
    "devices": [str(d) for d in jax.devices()],
    "jax": jax.__version__,
  }


def grown_counts(spec, tasks_ended: int, total: int, final_params: float) -> np.ndarray:
  """Active widths after ``tasks_ended`` growths, linear towards ``final_params`` at ``total``."""
  start = np.asarray(spec.start, np.float64)
  target = final_params * tasks_ended / max(total - 1, 1) + gen.masked_count(spec, spec.start) * (
    1 - tasks_ended / max(total - 1, 1)
  )
  lo, hi = 1.0, 100.0
  for _ in range(60):  # bisect the width factor whose masked count is the target
    mid = (lo + hi) / 2
    if gen.masked_count(spec, np.ceil(start * mid).astype(int)) < target:
      lo = mid
    else:
      hi = mid
  return np.ceil(start * hi).astype(np.int32) if tasks_ended else start.astype(np.int32)


def method_and_state(
  variant: str, task: int, final_params: float, loops: str = "auto", conv: str = "auto"
):
  c = base_config()
  c.method, c.batch_size, c.epochs = "dgm", BATCH, 101
  c.dgm.update(
    variant=variant,
    ngf=6 if variant == "w" else 20,
    smax=1e4 if variant == "w" else 1e5,
    lambda_ru=0.08 if variant == "w" else 0.01,
    loops=loops,
    conv=conv,
  )
  bench = types.SimpleNamespace(image_shape=(32, 32, 1), num_tasks=10, num_classes=10)
  method = DGM.from_config(c, bench)
  example = Batch(
    jnp.zeros((2, 32, 32, 1), jnp.uint8), jnp.zeros((2,), jnp.int32), jnp.ones((2,), bool), 0
  )
  state = method.init(jax.random.key(0), example, bench)
  t = task - 1  # 0-based
  if t > 0:
    counts = grown_counts(method.spec, t, 10, final_params)
    widths = tuple(gen.round_up(x, method.shape_multiple) for x in counts)
    state = dgm_shapes.pad(
      method, state, widths, grown=(t - 1, np.asarray(state.counts[0]), counts)
    )
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (SAMPLES, 32, 32, 1), np.uint8))
  labels = jnp.full((SAMPLES,), t, jnp.int32)
  task_data = types.SimpleNamespace(index=t, size=SAMPLES)
  state = method.begin_task(state, task_data)
  rows = -(-SAMPLES // BATCH)
  order = np.arange(rows * BATCH) % SAMPLES
  mask = np.arange(rows * BATCH) < SAMPLES
  data = EpochData(
    images,
    labels,
    jnp.asarray(order.reshape(rows, BATCH), jnp.int32),
    jnp.asarray(mask.reshape(rows, BATCH)),
    jnp.int32(t),
  )
  return method, state, data, rows


def measure(
  variant: str,
  task: int,
  steps: int,
  repeats: int,
  final_params: float,
  loops: str,
  conv: str = "auto",
) -> dict:
  method, learner, data, rows = method_and_state(variant, task, final_params, loops, conv)
  counts = np.asarray(learner.counts[task - 1])  # (the step donates the state)
  state = TrainState(step=jnp.zeros((), jnp.int32), key=jax.random.key(1), learner=learner)
  step = jax.jit(chunks.make_train_step(method, "main"), donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state, data, np.int32(0)).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))
  position = 0

  def run(n):
    nonlocal state, position
    for _ in range(n):
      state, _ = compiled(state, data, np.int32(position % (rows - 1)))
      position += 1
    jax.block_until_ready(state)

  run(2)  # warm-up
  rates = []
  for _ in range(repeats):
    t1 = time.perf_counter()
    run(steps)
    rates.append(steps / (time.perf_counter() - t1))
  rate = statistics.median(rates)
  return {
    "variant": variant,
    "task": int(task),
    "loops": "unroll" if method.unroll else "scan",
    "conv": method.spec.conv,
    "counts": counts.tolist(),
    "masked_params": int(gen.masked_count(method.spec, counts)),
    "compile_s": round(compile_s, 2),
    "iterations_per_s": round(rate, 3),
    "gflop_per_iteration": round(flops / 1e9, 3),
    "gflop_per_s": round(flops * rate / 1e9, 2),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="w", choices=("w", "a"))
  parser.add_argument("--tasks", default="1,10")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument(
    "--final_params",
    type=float,
    default=0.0,
    help="masked G weights after 10 tasks (0: Table 3 / 4's)",
  )
  parser.add_argument("--loops", default="auto", help="auto | scan | unroll | scan,unroll")
  parser.add_argument(
    "--conv",
    default="auto",
    help="D's strided convolutions: auto | xla | space_to_depth, or a list",
  )
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  final = args.final_params or TARGET[args.variant]
  rows = [
    measure(args.variant, int(t), args.steps, args.repeats, final, loops, conv)
    for loops in args.loops.split(",")
    for conv in args.conv.split(",")
    for t in args.tasks.split(",")
  ]
  report = {"machine": machine(), "batch": BATCH, "rows": rows}
  m = report["machine"]
  print(f"machine: {m['cpu']} ({m['backend']}); CPU convolutions: {m['cpu_convolutions']}")
  print(
    "variant loops  conv            task  widths            G params  compile s  it/s     "
    "GFLOP/it  GFLOP/s"
  )
  for r in rows:
    print(
      f"{r['variant']:>7} {r['loops']:>6} {r['conv']:<15} {r['task']:>4}  {str(r['counts']):<17} "
      f"{r['masked_params']:>8}  "
      f"{r['compile_s']:>9}  {r['iterations_per_s']:>7}  {r['gflop_per_iteration']:>8}  "
      f"{r['gflop_per_s']:>7}"
    )
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
