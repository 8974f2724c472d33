"""Seq-MNIST (class-IL, 5 tasks x 2 classes): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/seq_mnist.py:500 --workdir=/tmp/seq_mnist_500
  python -m dynamos_jax.run --config=configs/seq_mnist.py:1000 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz

The argument is the buffer size (500, 1000 or 2000; plain = 500). Data comes
from TFDS by default; offline, point the ``files`` source at MNIST.
"""

from dynamos_jax.config import base_config

# Table 5 (identical to the reference best-args; lam positive, spec section 11).
TABLE5 = {
    500: dict(alpha=0.2, beta=2.0, alpha_p=0.2, lam=500.0, gamma=0.5, w_p=0.3),
    1000: dict(alpha=0.1, beta=2.5, alpha_p=0.2, lam=200.0, gamma=0.7, w_p=0.5),
    2000: dict(alpha=0.5, beta=3.0, alpha_p=0.2, lam=200.0, gamma=0.5, w_p=0.5),
}


def get_config(arg: str | None = None):
  buffer_size = int(arg) if arg else 500
  if buffer_size not in TABLE5:
    raise ValueError(f"configs/seq_mnist.py:{arg}: Table 5 has buffer sizes "
                     f"{sorted(TABLE5)}; use one of them or override --config.buffer_size")
  c = base_config()
  c.dataset = "seq-mnist"
  c.buffer_size = buffer_size
  c.batch_size = 10
  c.minibatch_size = 10
  c.lr = 0.07
  c.epochs = 1
  c.kr = 0.7
  c.warmup.iterations = 10  # "10 it": the first 10 iterations of task 1
  c.warmup.epochs = 0
  c.update(TABLE5[buffer_size])
  c.data.source = "tfds"
  return c
