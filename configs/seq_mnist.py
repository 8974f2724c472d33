"""Seq-MNIST (class-IL, 5 tasks x 2 classes): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/seq_mnist.py:500 --workdir=/tmp/seq_mnist_500
  python -m dynamos_jax.run --config=configs/seq_mnist.py:1000 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz

The argument is the buffer size (500, 1000 or 2000; plain = 500). Data comes
from TFDS by default; offline, point the ``files`` source at MNIST.
"""

from dynamos_jax.config import table5_config

# Table 5 (identical to the reference best-args; lam positive;
# docs/dynamos.md#hyperparameters).
TABLE5 = {
  500: dict(alpha=0.2, beta=2.0, alpha_p=0.2, lam=500.0, gamma=0.5, w_p=0.3),
  1000: dict(alpha=0.1, beta=2.5, alpha_p=0.2, lam=200.0, gamma=0.7, w_p=0.5),
  2000: dict(alpha=0.5, beta=3.0, alpha_p=0.2, lam=200.0, gamma=0.5, w_p=0.5),
}


def get_config(arg: str | None = None):
  return table5_config(
    TABLE5,
    arg,
    500,
    "configs/seq_mnist.py",
    dataset="seq-mnist",
    batch_size=10,
    minibatch_size=10,
    lr=0.07,
    epochs=1,
    # "10 it": the warm-up is the first 10 iterations of task 1.
    dynamos=dict(kr=0.7, warmup=dict(iterations=10, epochs=0)),
    data=dict(source="tfds"),
  )
