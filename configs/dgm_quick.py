"""DGM quick run: DGMw on the bundled 5 000-image MNIST subset, sized for a 2-core CPU.

  python -m dynamos_jax.run --config=configs/dgm_quick.py --workdir=runs/dgm_quick
  python -m dynamos_jax.run --config=configs/dgm_quick.py:dgma --workdir=runs/dgm_quick_a
  python -m dynamos_jax.run --config=configs/dgm_quick.py:jt --workdir=runs/dgm_quick_jt

What it is: the whole DGM algorithm of configs/dgm_mnist.py (the released
MNIST settings: masks, their scale schedule, growth, replay, WGAN-GP, D
re-initialised per task) on 340 training images per class (the subset's 400
minus the 15 % hold-out), offline, with a short schedule and a narrower D so
that it finishes here in minutes. What it is not: the paper's experiment. The
paper trains 101 epochs per task on ~5 000 images per class (~80 000
iterations); here each task gets 20 epochs of ceil(340 / 32) = 11 batches
(2 200 iterations in all), so G has seen far fewer steps and its replayed
digits are rougher, and ndf = 16 instead of 32. Its A10 is a smoke-level
figure for this CPU, not a reproduction (docs/results.md#dgm).

Measured (seed 0, the idle 2-core AMD EPYC Zen 4, 2026-12-01): A10 71.4
(A_t 100, 50.0, 40.3, 63.8, 62.0, 29.3, 87.3, 87.4, 43.3, 71.4), 9 min 47 s
wall (353 s training, 112 s compiling, once per task). :jt (the same D as a
plain classifier, 20 epochs of the merged subset): A10 97.0 in 1.6 minutes.
"""

from dynamos_jax.config import sibling_config

dgm_mnist = sibling_config(__file__, "dgm_mnist.py")

EPOCHS = 20  # per task
BATCH = 32
NDF = 16


def get_config(arg: str | None = None):
  c = dgm_mnist.get_config(arg)
  c.data.source = "bundled"
  c.epochs = EPOCHS
  c.batch_size = BATCH
  c.dgm.ndf = NDF
  c.dgm.eval_every = 2
  c.checkpoint.every_steps = 1000
  c.train.chunk_size = 50
  return c
