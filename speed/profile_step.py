"""Where the training step's time goes: XLA ops grouped by layer kind and by op kind.

  python speed/profile_step.py [--method=dynamos] [--benchmark=seq-mnist] [--steps=20] \
      [--no-agent_moments]

Traces ``--steps`` steps of the jitted one-seed step (full buffer, as in
speed/throughput.py) with ``jax.profiler``, then sums the durations of
the executed XLA ops (from the Perfetto trace), attributing each to the
Flax module and the forward or backward pass named in its HLO metadata.
Op durations can overlap (XLA:CPU runs some ops concurrently, and a
library kernel may use several threads), so their sum can exceed the wall
time, which is printed apart.
"""

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time
import types

import jax
import numpy as np
import throughput  # The benchmark's shapes and full-buffer state.

from dynamos_jax import chunks, methods
from dynamos_jax.config import base_config
from dynamos_jax.data.streams import EpochData


def _layer_kind(op_name: str) -> str:
  """``agent``, ``conv``, ``batchnorm``, ``head``, ``loss/buffer/optimizer`` from an op's path."""
  if "agent" in op_name:
    return "agent"
  if re.search(r"/(conv1|conv_a|conv_b|shortcut_conv)/", op_name):
    return "conv"
  if re.search(r"/(bn1|bn_a|bn_b|shortcut_bn)/", op_name):
    return "batchnorm"
  if "/head/" in op_name:
    return "head"
  return "loss/buffer/optimizer"


def trace_ops(method, state, data, steps: int, warmup: int, position=lambda i: i):
  """Compiles ``method``'s main step (as the trainer does), runs ``warmup`` steps, then
  traces ``steps`` with ``jax.profiler``. Step i reads row ``position(i)`` of ``data``.

  Returns (wall seconds per traced step, {XLA op: microseconds summed over the traced
  steps}, {XLA op: its HLO ``op_name``, the name stack of transforms and modules}).
  """
  step = jax.jit(chunks.make_train_step(method, "main"), donate_argnums=0)
  compiled = step.lower(state, data, np.int32(0)).compile()
  op_names = dict(
    re.findall(r"%([\w.\-]+) = .*?metadata=\{op_name=\"([^\"]+)\"", compiled.as_text())
  )
  for i in range(warmup):
    state, _ = compiled(state, data, np.int32(position(i)))
  jax.block_until_ready(state)
  directory = tempfile.mkdtemp(prefix="step_profile_")
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    t0 = time.perf_counter()
    for i in range(steps):
      state, _ = compiled(state, data, np.int32(position(i)))
    jax.block_until_ready(state)
    wall = (time.perf_counter() - t0) / steps
  path = glob.glob(f"{directory}/**/*perfetto_trace.json.gz", recursive=True)[0]
  trace = json.load(gzip.open(path))
  durations = collections.Counter()
  for e in trace["traceEvents"] if isinstance(trace, dict) else trace:
    if e.get("ph") == "X" and e["name"] in op_names:
      durations[e["name"]] += e["dur"]
  return wall, durations, op_names


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", default="dynamos")
  parser.add_argument("--benchmark", default="seq-mnist", choices=list(throughput.SHAPES))
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument(
    "--agent_moments",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="the agents from moments (config model.agent_moments, on by "
    "default; --no-agent_moments: the plain Flax layers)",
  )
  args = parser.parse_args()

  spec = throughput.SHAPES[args.benchmark]
  config = base_config()
  config.method = args.method
  config.batch_size = config.minibatch_size = spec["batch"]
  config.model.agent_moments = args.agent_moments
  method = methods.get_method(config, types.SimpleNamespace(num_classes=10))
  state = throughput.full_state(method, spec["shape"], spec["buffer"], 0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (throughput.POOL, *spec["shape"]), dtype=np.uint8)
  labels = rng.integers(0, 10, throughput.POOL, dtype=np.int32)
  orders, masks, rotation = throughput.epoch_data(
    images, labels, spec["batch"], 1, spec["rotate"], rng
  )
  data = EpochData(
    images, labels, orders[0], masks[0], np.int32(0), None if rotation is None else rotation[0]
  )
  data = jax.device_put(data)
  wall, durations, metadata = trace_ops(method, state, data, args.steps, warmup=5)
  by_layer, by_op = collections.Counter(), collections.Counter()
  for name, us in durations.items():
    op_name = metadata[name]
    direction = "backward" if "transpose(" in op_name else "forward"
    by_layer[_layer_kind(op_name), direction] += us
    by_op[re.sub(r"[.\d]+$", "", name)] += us
  total = sum(by_layer.values())
  ms = lambda us: us / args.steps / 1000
  print(
    f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); {args.method}, "
    f"{args.benchmark} shapes, batch {spec['batch']} + replay; full buffer"
  )
  print(
    f"wall time per step (traced): {wall * 1000:.1f} ms; sum of op durations: {ms(total):.1f} ms"
  )
  print("\nby layer kind and pass (ms per step, share of the op time):")
  for (kind, direction), us in by_layer.most_common():
    print(f"  {kind:>22} {direction:>8} {ms(us):7.1f}  {100 * us / total:5.1f}%")
  print("\nby XLA op (top 12):")
  for name, us in by_op.most_common(12):
    print(f"  {name:>30} {ms(us):7.1f}  {100 * us / total:5.1f}%")


if __name__ == "__main__":
  main()
