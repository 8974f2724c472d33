"""MNIST-360 (general continual learning): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/mnist360.py:100 --workdir=/tmp/mnist360_100
  python -m dynamos_jax.run --config=configs/mnist360.py:500 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz

The argument is the buffer size (100, 200 or 500; plain = 100). Digits 0-8,
rotating, one pass over a stream of class pairs without task boundaries; one
accuracy over all rotated test draws at the end. Works on every MNIST source.
The stream: docs/dynamos.md#the-mnist-360-stream.
"""

from dynamos_jax.config import table5_config

# Table 5 (identical to the reference best-args; lam positive;
# docs/dynamos.md#hyperparameters).
TABLE5 = {
  100: dict(alpha=0.2, beta=1.0, alpha_p=0.1, lam=200.0, gamma=0.5, w_p=0.5),
  200: dict(alpha=0.2, beta=1.5, alpha_p=0.1, lam=200.0, gamma=1.0, w_p=0.5),
  500: dict(alpha=0.1, beta=1.5, alpha_p=0.1, lam=200.0, gamma=0.3, w_p=0.3),
}


def get_config(arg: str | None = None):
  return table5_config(
    TABLE5,
    arg,
    100,
    "configs/mnist360.py",
    dataset="mnist-360",
    batch_size=16,
    minibatch_size=16,
    lr=0.07,
    epochs=1,  # epochs=1: a single pass
    dynamos=dict(kr=0.7, warmup=dict(iterations=10, epochs=0)),  # "10 it"
    data=dict(source="tfds"),
  )
