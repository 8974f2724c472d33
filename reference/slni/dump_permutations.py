"""Dumps what a dynamos_jax permuted-MNIST run of each seed sees, for the authors' code.

  python reference/slni/dump_permutations.py --seeds=0,1,2 \
      --path=/path/to/mnist.pkl.gz --out=/tmp/slni_ref_data

Writes OUT/mnist_uint8.npz (train_images uint8 [60000, 28, 28], train_labels
int64 [60000], test_images uint8 [10000, 28, 28], test_labels int64 [10000]:
the bytes our pipeline loads from the same file) and OUT/permutations_seed{S}.npy
(int64 [5, 784]: row t is the pixel order of task t, row 0 the identity), taken
from the benchmark object of the run itself (``experiment.Experiment``), so they
are the permutations ``--config.seeds=S`` trains on, not a re-derivation.
"""

import argparse
import os
import sys

import numpy as np

from dynamos_jax import config as config_lib
from dynamos_jax import experiment
from dynamos_jax.errors import ConfigError, DataError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from configs import permuted_mnist  # noqa: E402  (the repository's config directory)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--path", required=True, help="mnist.pkl.gz or a directory of IDX files")
  parser.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  try:
    seeds = [int(s) for s in args.seeds.split(",")]
  except ValueError:
    print(
      f"error: --seeds={args.seeds!r}: give comma-separated integers, e.g. 0,1,2", file=sys.stderr
    )
    return 2
  os.makedirs(args.out, exist_ok=True)
  cfg = permuted_mnist.get_config("mas128")
  cfg.data.source, cfg.data.path = "files", args.path
  try:
    config_lib.validate(cfg)
    first = None
    for seed in seeds:
      exp = experiment.Experiment(cfg, seed, shared_with=first)
      first = first or exp
      perms = np.asarray(exp.benchmark.permutations, dtype=np.int64)
      np.save(os.path.join(args.out, f"permutations_seed{seed}.npy"), perms)
      print(
        f"seed {seed}: permutations {perms.shape}, first row identity: "
        f"{np.array_equal(perms[0], np.arange(perms.shape[1]))}"
      )
  except (ConfigError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  host = first.benchmark.data.host
  np.savez(
    os.path.join(args.out, "mnist_uint8.npz"),
    train_images=np.asarray(host.train_images)[..., 0],
    train_labels=np.asarray(host.train_labels).astype(np.int64),
    test_images=np.asarray(host.test_images)[..., 0],
    test_labels=np.asarray(host.test_labels).astype(np.int64),
  )
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
