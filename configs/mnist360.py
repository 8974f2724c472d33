"""MNIST-360 (general continual learning, spec 10.3): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/mnist360.py:100 --workdir=/tmp/mnist360_100
  python -m dynamos_jax.run --config=configs/mnist360.py:500 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz

The argument is the buffer size (100, 200 or 500; plain = 100). Digits 0-8,
rotating, one pass over a stream of class pairs without task boundaries; one
accuracy over all rotated test draws at the end. Works on every MNIST source.
"""

from dynamos_jax.config import base_config

# Table 5 (identical to the reference best-args; lam positive, spec section 11).
TABLE5 = {
    100: dict(alpha=0.2, beta=1.0, alpha_p=0.1, lam=200.0, gamma=0.5, w_p=0.5),
    200: dict(alpha=0.2, beta=1.5, alpha_p=0.1, lam=200.0, gamma=1.0, w_p=0.5),
    500: dict(alpha=0.1, beta=1.5, alpha_p=0.1, lam=200.0, gamma=0.3, w_p=0.3),
}


def get_config(arg: str | None = None):
  buffer_size = int(arg) if arg else 100
  if buffer_size not in TABLE5:
    raise ValueError(f"configs/mnist360.py:{arg}: Table 5 has buffer sizes "
                     f"{sorted(TABLE5)}; use one of them or override --config.buffer_size")
  c = base_config()
  c.dataset = "mnist-360"
  c.buffer_size = buffer_size
  c.batch_size = 16
  c.minibatch_size = 16
  c.lr = 0.07
  c.epochs = 1  # a single pass over the stream
  c.kr = 0.7
  c.warmup.iterations = 10  # "10 it"
  c.warmup.epochs = 0
  c.update(TABLE5[buffer_size])
  c.data.source = "tfds"
  return c
