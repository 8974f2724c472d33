"""Seq-SVHN (class-IL, 5 tasks x 2 classes): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/svhn.py:500 --workdir=/tmp/svhn_500
  python -m dynamos_jax.run --config=configs/svhn.py:2000 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/svhn_mat_dir

The argument is the buffer size (500, 1000 or 2000; plain = 500). Data comes
from TFDS (``svhn_cropped``) by default; offline, point the ``files`` source at
a folder holding the official train_32x32.mat and test_32x32.mat.
"""

from dynamos_jax.config import table5_config

# Table 5 (identical to the reference best-args; lam positive;
# docs/dynamos.md#hyperparameters).
TABLE5 = {
  500: dict(alpha=2.0, beta=3.0, alpha_p=1.0, lam=500.0, gamma=1.0, w_p=0.5),
  1000: dict(alpha=2.5, beta=2.0, alpha_p=0.2, lam=500.0, gamma=1.0, w_p=0.5),
  2000: dict(alpha=2.5, beta=2.0, alpha_p=0.2, lam=500.0, gamma=1.0, w_p=0.5),
}


def get_config(arg: str | None = None):
  return table5_config(
    TABLE5,
    arg,
    500,
    "configs/svhn.py",
    dataset="seq-svhn",
    batch_size=16,
    minibatch_size=16,
    lr=0.07,
    epochs=70,
    # "10 ep": the warm-up is the first 10 epochs of task 1.
    dynamos=dict(kr=0.7, warmup=dict(iterations=0, epochs=10)),
    data=dict(source="tfds"),
    # ~320k steps in all; a save takes well under a second.
    checkpoint=dict(every_steps=5000),
  )
