"""DGM on SVHN, ten one-class tasks (cfg_svhn_dgmw.yml; DGMa inferred).

See docs/dgm.md#hyperparameters.

  python -m dynamos_jax.run --config=configs/dgm_svhn.py:dgmw --workdir=runs/dgm_svhn_w
  python -m dynamos_jax.run --config=configs/dgm_svhn.py:dgma --workdir=runs/dgm_svhn_a \
      --config.data.source=files --config.data.path=/path/to/svhn   # train/test_32x32.mat
  python -m dynamos_jax.run --config=configs/dgm_svhn.py:jt --workdir=runs/dgm_svhn_jt

SVHN's train split (73 257 cropped digits, `extra` unused) and test split
(26 032), 32x32x3, 10 % of each class held out. DGMw as released: batch 64,
151 epochs per task, Adam lr 5e-4 (D and G), betas (0.5, 0.999), ngf 6,
s_max 1e4, lambda_RU 0.001, lambda_GP = lambda_adv = 1, D re-initialised per
task, seed 100, validation every 2 epochs.

DGMa: the released run.py names cfg_svhn_dgma.yml, which is not in the
repository (docs/dgm.md#not-settled-by-paper-or-code). *Inferred*: SVHN's DGMw
schedule (batch, epochs, lr, seed, lambda_RU 0.001) with MNIST-DGMa's
architecture and scale (ngf 20, s_max 1e5, validation every 5 epochs). JT: no
published hyperparameters (docs/dgm.md#joint-training-upper-bound): D's Adam
settings, 151 epochs over the merged training set.

Data: with internet once, `tfds build svhn_cropped --file_format=array_record`;
offline, the official .mat files (source files). No GPU-free schedule: a run
is about 156 000 iterations (docs/dgm.md#hyperparameters).
"""

from dynamos_jax.config import sibling_config

dgm_mnist = sibling_config(__file__, "dgm_mnist.py")

VARIANTS = {
  "dgmw": dict(variant="w", ngf=6, smax=1e4, lambda_ru=0.001, eval_every=2),
  "dgma": dict(variant="a", ngf=20, smax=1e5, lambda_ru=0.001, eval_every=5),  # inferred
}
SHARED = {**dgm_mnist.SHARED, "lr_d": 5e-4, "lr_g": 5e-4}


def get_config(arg: str | None = None):
  return dgm_mnist.dgm_config(
    "dgm-svhn",
    arg,
    VARIANTS,
    SHARED,
    batch_size=64,
    epochs=151,
    seed=100,
    name="configs/dgm_svhn.py",
  )
