"""Seq-SVHN (class-IL, 5 tasks x 2 classes): the paper's Table 5 rows.

  python -m dynamos_jax.run --config=configs/svhn.py:500 --workdir=/tmp/svhn_500
  python -m dynamos_jax.run --config=configs/svhn.py:2000 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/svhn_mat_dir

The argument is the buffer size (500, 1000 or 2000; plain = 500). Data comes
from TFDS (``svhn_cropped``) by default; offline, point the ``files`` source at
a folder holding the official train_32x32.mat and test_32x32.mat.
"""

from dynamos_jax.config import base_config

# Table 5 (identical to the reference best-args; lam positive, spec section 11).
TABLE5 = {
    500: dict(alpha=2.0, beta=3.0, alpha_p=1.0, lam=500.0, gamma=1.0, w_p=0.5),
    1000: dict(alpha=2.5, beta=2.0, alpha_p=0.2, lam=500.0, gamma=1.0, w_p=0.5),
    2000: dict(alpha=2.5, beta=2.0, alpha_p=0.2, lam=500.0, gamma=1.0, w_p=0.5),
}


def get_config(arg: str | None = None):
  buffer_size = int(arg) if arg else 500
  if buffer_size not in TABLE5:
    raise ValueError(f"configs/svhn.py:{arg}: Table 5 has buffer sizes "
                     f"{sorted(TABLE5)}; use one of them or override --config.buffer_size")
  c = base_config()
  c.dataset = "seq-svhn"
  c.buffer_size = buffer_size
  c.batch_size = 16
  c.minibatch_size = 16
  c.lr = 0.07
  c.epochs = 70
  c.kr = 0.7
  c.warmup.iterations = 0
  c.warmup.epochs = 10  # "10 ep": the first 10 epochs of task 1
  c.update(TABLE5[buffer_size])
  c.data.source = "tfds"
  c.checkpoint.every_steps = 5000  # ~320k steps in all; a save takes well under a second
  return c
