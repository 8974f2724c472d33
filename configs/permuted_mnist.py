"""Permuted MNIST with SLNI (docs/slni.md#presets): the authors' demo settings.

  python -m dynamos_jax.run --config=configs/permuted_mnist.py:mas128 --workdir=/tmp/pm_mas128
  python -m dynamos_jax.run --config=configs/permuted_mnist.py:ewc64 --workdir=... \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz

The argument is the importance and the hidden width: mas128 (plain), mas64,
ewc128, ewc64 (the demos' widths), or any width of the sweep the authors ship
initial models for, 8, 16, 32, 64, 128, 256, 512 (mas8 ... ewc512):

  for n in 8 16 32 64 128 256 512; do python -m dynamos_jax.run \
      --config=configs/permuted_mnist.py:mas$n --workdir=runs/pm_mas$n; done

SLNID (Gaussian locality sigma = N / 6, neuron-importance discount) on both
hidden layers of a 784-N-N-10 MLP with one shared head; SGD
with momentum 0.9 at lr 0.01, batch 200, 10 epochs per task. MAS demo:
lambda_SSL 1e-3, lambda_Omega 0.1; EWC demo: lambda_SSL 2e-3, lambda_Omega 10
(the reference's EWC demo trains tasks 2-5 at batch 150; here every task uses
200). Any regulariser of the family: --config.slni.regularizer=NAME.
"""

from dynamos_jax.config import base_config

DEMOS = {
  "mas": dict(importance="mas", lambda_ssl=1e-3, lambda_omega=0.1),
  "ewc": dict(importance="ewc", lambda_ssl=2e-3, lambda_omega=10.0),
}
# The width sweep (the authors ship an initial model for each).
WIDTHS = ("8", "16", "32", "64", "128", "256", "512")


def get_config(arg: str | None = None):
  arg = arg or "mas128"
  kind, width = arg[:3], arg[3:]
  if kind not in DEMOS or width not in WIDTHS:
    raise ValueError(
      f"configs/permuted_mnist.py:{arg}: use mas128, mas64, ewc128 or ewc64, "
      f"or mas/ewc with a width of {', '.join(WIDTHS)} (e.g. mas8)"
    )
  c = base_config()
  c.method = "slni"
  c.dataset = "permuted-mnist"
  c.lr = 0.01
  c.batch_size = 200
  c.epochs = 10
  c.buffer_size = 0  # No replay buffer.
  c.slni.update(DEMOS[kind])
  c.slni.width = int(width)
  c.data.source = "tfds"
  c.checkpoint.every_steps = 3000
  return c
