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
lambda_SSL 1e-3, lambda_Omega 0.1; EWC demo: lambda_SSL 2e-3, lambda_Omega 10.
Any regulariser of the family: --config.slni.regularizer=NAME.

Where these defaults differ from the authors' Demo_MAS.py and Demo_EWC.py (commit
83270c1; docs/slni.md#paper-and-code-differences), and the flags that give theirs:

- weights kept at the end of a task: here the last epoch's
  (slni.selection=last); theirs the epoch with the best accuracy on the test set
  they report: --config.slni.selection=best_test_epoch (best_epoch selects so on
  a validation split, --config.data.validation=0.1; docs/slni.md#model-selection);
- SLNID's discount: here Eq. 6's product exp(-(alpha_i + alpha_j)); theirs
  exp(-max(alpha_i, alpha_j)): --config.slni.discount=min;
- initial weights: here drawn from the seed; theirs the hidden layers of one
  shipped file per width for every seed (the head is fresh in both):
  --config.slni.init_weights=FILE.npz, made by reference/slni/export_initial.py
  (docs/slni.md#initialisation);
- the EWC demo trains tasks 2-5 at batch 150 (its importance pass stays at
  200); here every task uses 200, and no flag changes the batch of some tasks
  only;
- the width: their demo files run N = 64 only (hsizes = [ 64], a comment
  naming 128 and 64); this file's default is mas128: use :mas64 / :ewc64;
- the permutations: theirs chained unseeded shuffles, here one per task drawn
  from the seed (no flag; reference/slni/ runs their code on ours).

All three flags together, for the MAS demo at N = 64:

  python -m dynamos_jax.run --config=configs/permuted_mnist.py:mas64 --workdir=... \
      --config.slni.selection=best_test_epoch --config.slni.discount=min \
      --config.slni.init_weights=/tmp/slni_init/permuted_64_mnist_net.npz
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
