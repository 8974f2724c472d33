"""Dumps the images a dynamos_jax DGM run sees, for the authors' code.

  python reference/dgm/dump_data.py --seed=0 --out=/tmp/dgm_ref_data/quick_seed0.npz
  python reference/dgm/dump_data.py --config=mnist --epochs=10 --source=files \
      --path=.../mnist/data/mnist.pkl.gz --out=/tmp/dgm_ref_data/mnist_e10_seed0.npz

Builds ``experiment.Experiment`` of ``configs/dgm_quick.py:dgmw`` (``--config=quick``, the
bundled MNIST subset) or ``configs/dgm_mnist.py:dgmw`` (``--config=mnist``; ``--source`` /
``--path`` take other data, ``--epochs`` another schedule) for the seed and writes,
per task t, its training images in our fixed batch order, its held-out
validation images and the class's test images as float32 NCHW in [-1, 1] with
labels (refdata.task_arrays), plus the run's batch size and epochs in ``meta``.
"""

import argparse
import os
import sys

from dynamos_jax import config as config_lib
from dynamos_jax import experiment
from dynamos_jax.errors import ConfigError, DataError
from dynamos_jax.methods.dgm.discriminator import to_unit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import refdata  # noqa: E402

from configs import dgm_mnist, dgm_quick  # noqa: E402  (the repository's config directory)

CONFIGS = {
  "quick": (dgm_quick, "configs/dgm_quick.py:dgmw"),
  "mnist": (dgm_mnist, "configs/dgm_mnist.py:dgmw"),
}


def experiment_of(
  seed: int,
  source: str | None = None,
  path: str | None = None,
  config: str = "quick",
  epochs: int = 0,
):
  """``Experiment`` of ``CONFIGS[config]`` for ``seed`` (data source and epochs overridable)."""
  cfg = CONFIGS[config][0].get_config("dgmw")
  if epochs:
    cfg.epochs = epochs
  if source:
    cfg.data.source = source
  if path:
    cfg.data.path = path
  config_lib.validate(cfg)
  return experiment.Experiment(cfg, seed)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--config", default="quick", choices=sorted(CONFIGS))
  parser.add_argument("--epochs", type=int, default=0, help="0: the config's")
  parser.add_argument("--source", default=None, help="default: dgm_quick's (bundled)")
  parser.add_argument("--path", default=None)
  parser.add_argument("--out", required=True, help="the .npz to write")
  args = parser.parse_args(argv)
  try:
    exp = experiment_of(args.seed, args.source, args.path, args.config, args.epochs)
    tasks = refdata.task_arrays(exp.benchmark, to_unit)
  except (ConfigError, DataError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  cfg = exp.config
  meta = {
    "config": CONFIGS[args.config][1],
    "seed": args.seed,
    "source": cfg.data.source,
    "num_tasks": len(tasks),
    "batch_size": cfg.batch_size,
    "epochs": cfg.epochs,
    "ndf": cfg.dgm.ndf,
    "counts": {s: [len(t[f"{s}_y"]) for t in tasks] for s in refdata.SPLITS},
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  refdata.save(args.out, tasks, meta)
  print(f"wrote {args.out}: {meta['counts']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
