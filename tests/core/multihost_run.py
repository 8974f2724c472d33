"""One process of the multi-host test (tests/core/test_multihost.py): two seeds of a tiny
sgd run on the tiny dataset, ``train.distributed`` when JAX_NUM_PROCESSES is set.

  python tests/core/multihost_run.py WORKDIR [SECONDS_PER_CHUNK]

SECONDS_PER_CHUNK > 0 sleeps after every chunk (numbers unchanged), so the test
can kill the processes mid-run.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: conftest

from dynamos_jax import chunks as runner  # noqa: E402
from dynamos_jax import (
  parallel,  # noqa: E402
  trainer,  # noqa: E402
)
from dynamos_jax.config import base_config  # noqa: E402
from dynamos_jax.data import sources  # noqa: E402

import conftest  # noqa: E402


def main(workdir: str, pause: float) -> None:
  dataset = conftest.tiny_dataset()
  sources.load_dataset = lambda *a, **k: dataset
  c = base_config()
  c.method, c.seeds = "sgd", "0,1"
  c.data.source = "bundled"
  c.batch_size, c.epochs = 5, 1
  c.model.nf, c.model.mlp_reduction = 8, 4
  c.train.chunk_size, c.train.progress, c.train.eval_batch_size = 4, False, 16
  c.checkpoint.every_steps = 4
  c.train.distributed = "JAX_NUM_PROCESSES" in os.environ
  if pause > 0:
    run = runner.ChunkRunner.run

    def slow(self, *args):
      out = run(self, *args)
      time.sleep(pause)
      return out

    runner.ChunkRunner.run = slow
  parallel.start(c)
  trainer.train_and_evaluate(c, workdir)


if __name__ == "__main__":
  main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
