"""The nine Table 5 configs against the paper's table, and the warm-up counted in epochs."""

import importlib.util
import os
import types

import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import methods, trainer
from dynamos_jax.chunks import plan_chunks

from conftest import ROOT

# Paper Table 5 = the reference best-args (docs/dynamos.md#hyperparameters),
# typed in from the paper: (config file, buffer) -> (epochs, warm-up, B, B_M, alpha, beta,
# alpha_p, lambda, gamma, w_p, kr). Warm-up: ("it", n) iterations or ("ep", n) epochs.
TABLE5 = {
  ("seq_mnist", 500): (1, ("it", 10), 10, 10, 0.2, 2.0, 0.2, 500, 0.5, 0.3, 0.7),
  ("seq_mnist", 1000): (1, ("it", 10), 10, 10, 0.1, 2.5, 0.2, 200, 0.7, 0.5, 0.7),
  ("seq_mnist", 2000): (1, ("it", 10), 10, 10, 0.5, 3.0, 0.2, 200, 0.5, 0.5, 0.7),
  ("svhn", 500): (70, ("ep", 10), 16, 16, 2.0, 3.0, 1.0, 500, 1.0, 0.5, 0.7),
  ("svhn", 1000): (70, ("ep", 10), 16, 16, 2.5, 2.0, 0.2, 500, 1.0, 0.5, 0.7),
  ("svhn", 2000): (70, ("ep", 10), 16, 16, 2.5, 2.0, 0.2, 500, 1.0, 0.5, 0.7),
  ("mnist360", 100): (1, ("it", 10), 16, 16, 0.2, 1.0, 0.1, 200, 0.5, 0.5, 0.7),
  ("mnist360", 200): (1, ("it", 10), 16, 16, 0.2, 1.5, 0.1, 200, 1.0, 0.5, 0.7),
  ("mnist360", 500): (1, ("it", 10), 16, 16, 0.1, 1.5, 0.1, 200, 0.3, 0.3, 0.7),
}
DATASETS = {"seq_mnist": "seq-mnist", "svhn": "seq-svhn", "mnist360": "mnist-360"}


def _get_config(name, arg):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("name, buffer", sorted(TABLE5))
def test_config_is_its_table5_row(name, buffer):
  epochs, (unit, warmup), b, b_m, alpha, beta, alpha_p, lam, gamma, w_p, kr = TABLE5[name, buffer]
  c = _get_config(name, str(buffer))
  config_lib.validate(c)
  assert c.method == "dynamos" and c.dataset == DATASETS[name]
  assert c.buffer_size == buffer
  assert (c.epochs, c.batch_size, c.minibatch_size, c.lr) == (epochs, b, b_m, 0.07)
  d = c.dynamos
  assert (d.warmup.iterations, d.warmup.epochs) == ((warmup, 0) if unit == "it" else (0, warmup))
  assert (d.alpha, d.beta, d.alpha_p, d.gamma, d.w_p, d.kr) == (
    alpha,
    beta,
    alpha_p,
    gamma,
    w_p,
    kr,
  )
  assert d.lam == lam  # the paper's positive lambda (the code's --policy-penalty is -lambda)
  # Left at the reference's argparse defaults (docs/dynamos.md#hyperparameters).
  assert (d.tau, c.model.nf, c.model.mlp_reduction) == (0.15, 32, 16)
  # The method built from the config carries the same weights.
  method = methods.REGISTRY["dynamos"].from_config(
    c, types.SimpleNamespace(num_classes=9 if name == "mnist360" else 10)
  )
  assert (
    method.alpha,
    method.beta,
    method.alpha_p,
    method.gamma,
    method.w_p,
    method.lam,
    method.kr,
  ) == (alpha, beta, alpha_p, gamma, w_p, lam, kr)


def test_the_plain_config_is_the_first_buffer_size():
  for name, default in (("seq_mnist", 500), ("svhn", 500), ("mnist360", 100)):
    assert _get_config(name, None).to_dict() == _get_config(name, str(default)).to_dict()


def test_svhn_warmup_is_ten_epochs_of_task_1():
  c = _get_config("svhn", "500")
  method = methods.REGISTRY["dynamos"].from_config(c, types.SimpleNamespace(num_classes=10))
  batches = [7, 5]  # stand-ins for the tasks' batches per epoch
  assert method.phases(0, batches[0]) == (("warmup", 10 * 7), ("main", None))
  assert method.phases(1, batches[1]) == (("main", None),)
  chunks = plan_chunks(batches, c.epochs, method.phases, chunk_size=4)
  warm = [ch for ch in chunks if ch.phase == "warmup"]
  assert sum(ch.stop - ch.start for ch in warm) == 10 * 7
  # Exactly epochs 0-9 of task 1, whole; main from epoch 10 on, and in task 2 throughout.
  assert {(ch.task, ch.epoch) for ch in warm} == {(0, e) for e in range(10)}
  first_main = next(ch for ch in chunks if ch.phase == "main")
  assert (first_main.task, first_main.epoch, first_main.start) == (0, 10, 0)
  assert all(ch.phase == "main" for ch in chunks if ch.task == 1)


def test_warmup_epochs_through_the_experiment(tiny_data, tiny_config):
  tiny_config.epochs = 3
  tiny_config.dynamos.warmup.update(iterations=0, epochs=2)
  exp = trainer.Experiment(tiny_config)
  batches = exp.benchmark.batches[0]
  assert batches == 5  # 24 samples of task 1 at batch 5
  warm = [ch for ch in exp.chunks if ch.phase == "warmup"]
  assert sum(ch.stop - ch.start for ch in warm) == 2 * batches
  assert {(ch.task, ch.epoch) for ch in warm} == {(0, 0), (0, 1)}
