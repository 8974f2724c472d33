"""The DGM tests' two-task benchmark and run: dgm-mnist's first two one-class tasks.

``TwoDigits`` ("dgm-two") truncates the one-class MNIST benchmark to digits 0 and
1; ``config`` is tiny DGMw (or DGMa) on it; ``run`` trains ``config()`` once,
recording the state around each ``end_task``, for conftest's session fixture
``dgm_two_task_run`` that tests/dgm/test_dgm.py and test_dgm_plots.py read.
"""

import jax
import ml_collections
import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import trainer
from dynamos_jax.benchmarks import register
from dynamos_jax.benchmarks.one_class import OneClassMNIST
from dynamos_jax.data import sources
from dynamos_jax.methods.dgm.dgm import DGM

NAME = "dgm-two"


@register
class TwoDigits(OneClassMNIST):
  """dgm-mnist's first two one-class tasks (digits 0 and 1)."""

  name = NAME
  num_tasks = 2

  def __init__(self, config, data, key, joint):
    super().__init__(config, data, key, joint)
    self.task_indices, self.batches = self.task_indices[:2], self.batches[:2]
    self.seen_after = self.seen_after[:2]


def config(variant: str = "w", **dgm) -> ml_collections.ConfigDict:
  """Tiny DGM on TwoDigits: ngf 2, ndf 4, nz 16, batch 4, 2 epochs a task, chunks of 2
  steps (11 training images a class: chunks [0, 2), [2, 3) of each epoch), a checkpoint
  after every chunk; ``dgm`` overrides the method's keys."""
  c = config_lib.base_config()
  c.method, c.dataset, c.data.source = "dgm", NAME, "bundled"
  c.dgm.update(variant=variant, ngf=2, ndf=4, nz=16, lambda_ru=0.5)
  c.dgm.update(dgm)
  c.batch_size, c.epochs = 4, 2
  c.train.chunk_size = 2
  c.train.progress, c.train.eval_batch_size = False, 16
  c.checkpoint.every_steps, c.checkpoint.keep = 1, 50
  return c


def run(workdir: str, dataset) -> tuple[dict, dict, str]:
  """``config()`` trained in ``workdir`` on ``dataset``: (results, {task: (state before,
  state after end_task)}, workdir)."""
  hooks, original = {}, DGM.end_task

  def spy(self, state, task):
    out = original(self, state, task)
    hooks[task.index] = (jax.device_get(state), jax.device_get(out))
    return out

  with pytest.MonkeyPatch.context() as m:
    m.setattr(DGM, "end_task", spy)
    m.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    c = config()
    config_lib.validate(c)
    results = trainer.train_and_evaluate(c, workdir)
  return results, hooks, workdir
