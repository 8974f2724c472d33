"""Steps/s of one training step with a full buffer, compile time reported apart.

  python benchmarks/step_throughput.py [--method=dynamos] [--batch=10] [--steps=200]

Synthetic MNIST-shaped data (28x28x3 uint8); the buffer is filled before
timing so replay runs at full size. Reports the device, compile seconds and
the median steps/s over several repeats of a timed run of ``--steps`` steps
(python loop of the jitted, donated step: the CPU strategy).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamos_jax import methods
from dynamos_jax import train
from dynamos_jax.config import base_config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", default="dynamos")
  parser.add_argument("--batch", type=int, default=10)
  parser.add_argument("--buffer", type=int, default=500)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  config = base_config()
  config.method = args.method
  config.batch_size = config.minibatch_size = args.batch
  config.buffer_size = args.buffer
  method = methods.get_method(config)
  model = train.make_model(config, method, 10)
  tx = optax.sgd(config.lr)
  shape = (28, 28, 3)
  state = train.create_train_state(model, method, tx, shape, args.buffer, jax.random.key(0),
                                   jax.random.key(1))
  rng = np.random.default_rng(0)
  n = 2000
  images = jnp.asarray(rng.integers(0, 256, (n, *shape), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  if method.uses_buffer:  # A full buffer: every slot written, counter past capacity.
    buf = state.buffer
    state = state.replace(buffer=buf.replace(
        images=images[:args.buffer], labels=labels[:args.buffer],
        logits=jax.random.normal(jax.random.key(2), buf.logits.shape),
        attention=jax.random.normal(jax.random.key(3), buf.attention.shape),
        num_seen=jnp.int32(5 * args.buffer)))
  rows = n // args.batch
  data = train.EpochData(images, labels,
                         jnp.arange(rows * args.batch, dtype=jnp.int32).reshape(rows, -1),
                         jnp.ones((rows, args.batch), bool))
  step = jax.jit(train.make_train_step(model, method, tx, phase="main",
                                       minibatch_size=args.batch, only_valid=False),
                 donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state, data, np.int32(0)).compile()
  compile_s = time.perf_counter() - t0
  state, _ = compiled(state, data, np.int32(0))  # warm-up call
  jax.block_until_ready(state)
  rates = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    for i in range(args.steps):
      state, _ = compiled(state, data, np.int32(i % rows))
    jax.block_until_ready(state)
    rates.append(args.steps / (time.perf_counter() - t0))
  rate = statistics.median(rates)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{jax.device_count()} device(s)")
  print(f"method {args.method}, batch {args.batch} + replay {args.batch if method.uses_buffer else 0}, "
        f"buffer {args.buffer} (full)")
  print(f"compile: {compile_s:.1f} s")
  print(f"steady state: {rate:.1f} steps/s (median of {args.repeats} x {args.steps} steps; "
        f"all: {', '.join(f'{r:.1f}' for r in rates)}), "
        f"{rate * args.batch:.0f} stream images/s")


if __name__ == "__main__":
  main()
