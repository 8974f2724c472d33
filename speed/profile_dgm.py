"""Where one DGM iteration's time goes: XLA op time by network, derivative order and op kind.

  python speed/profile_dgm.py [--variant=w|a] [--task=1] [--conv=auto|xla] [--loops=auto]
                              [--steps=5]

Traces ``--steps`` iterations of the step speed/dgm_step.py measures (the same state and
shapes) with ``jax.profiler`` and sums the executed XLA ops' durations by
- the network, from the op's name stack: D (the Flax ``Discriminator``) or the rest
  (G's functional layers, the losses, Adam, the replay);
- the derivative order: how many ``transpose(`` the name stack holds (0: forward, 1: a
  gradient, 2: the gradient of the WGAN-GP gradient);
- the op kind: a library convolution or matmul (``ynn_fusion``), a convolution on XLA's
  generic path (``convolution*``, ``conv_general_dilated*``), or the rest (XLA's own
  elementwise and copy loops, dots outside the library).
Op durations can overlap (XLA:CPU runs independent ops concurrently), so the sum can
exceed the wall time, printed apart.
"""

import argparse
import collections

import dgm_step  # The iteration's state and shapes.
import jax
import jax.numpy as jnp
import profile_step  # trace_ops

from dynamos_jax.state import TrainState


def _kind(op: str) -> str:
  if op.startswith("ynn_fusion"):
    return "library conv/matmul"
  if op.startswith(("convolution", "conv_general_dilated")):
    return "conv, generic path"
  return "elementwise/copy/other"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="w", choices=("w", "a"))
  parser.add_argument("--task", type=int, default=1)
  parser.add_argument("--conv", default="auto", help="dgm.conv: auto | xla | space_to_depth")
  parser.add_argument(
    "--loops",
    default="auto",
    help="dgm.loops: auto | scan | unroll (a scanned loop's ops are not traced one by one)",
  )
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()

  method, learner, data, rows = dgm_step.method_and_state(
    args.variant, args.task, dgm_step.TARGET[args.variant], loops=args.loops, conv=args.conv
  )
  state = TrainState(step=jnp.zeros((), jnp.int32), key=jax.random.key(1), learner=learner)
  wall, durations, names = profile_step.trace_ops(
    method, state, data, args.steps, warmup=2, position=lambda i: i % (rows - 1)
  )
  total = collections.Counter()
  for name, us in durations.items():
    stack = names[name]
    net = "D" if "Discriminator" in stack else "G, losses, optimiser"
    total[net, stack.count("transpose("), _kind(name)] += us
  ms = lambda us: us / args.steps / 1000
  op_time = sum(total.values())
  print(
    f"device: {jax.devices()[0].device_kind}; DGM{args.variant}, task {args.task}, "
    f"dgm.conv={args.conv} ({method.spec.conv}); wall per iteration {wall * 1000:.0f} ms; "
    f"sum of op durations {ms(op_time):.0f} ms"
  )
  print("| network | derivative order | op kind | ms | share |")
  print("|---|---|---|---|---|")
  for (net, order, kind), us in total.most_common(12):
    print(f"| {net} | {order} | {kind} | {ms(us):.1f} | {100 * us / op_time:.1f}% |")


if __name__ == "__main__":
  main()
