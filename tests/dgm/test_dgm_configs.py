"""The DGM configs: each variant validates with the released settings; ImageNet-50 is refused
without its data."""

import importlib.util
import os

import pytest

from dynamos_jax.config import validate
from dynamos_jax.errors import ConfigError

from conftest import ROOT

CONFIGS = os.path.join(ROOT, "configs")


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config


@pytest.mark.parametrize("name", ["dgm_mnist", "dgm_svhn", "dgm_cifar10", "dgm_quick"])
@pytest.mark.parametrize("arg", ["dgmw", "dgma", "jt"])
def test_configs_validate(name, arg):
  c = _load(name)(arg)
  validate(c)
  assert c.method == ("dgm_joint" if arg == "jt" else "dgm")
  assert c.dataset == {"dgm_quick": "dgm-mnist"}.get(name, name.replace("_", "-"))


def test_released_settings():
  """The table of docs/dgm.md#hyperparameters, cell by cell where it is released."""
  w, a = _load("dgm_mnist")("dgmw"), _load("dgm_mnist")("dgma")
  for c in (w, a):
    assert (c.batch_size, c.epochs, c.seed) == (64, 101, 0)
    assert (c.dgm.lr_d, c.dgm.lr_g, c.dgm.beta1, c.dgm.beta2) == (2e-3, 2e-3, 0.5, 0.999)
    assert (c.dgm.lambda_gp, c.dgm.lambda_adv, c.dgm.aux_g, c.dgm.reinit_d) == (1, 1, False, True)
    assert (c.dgm.ndf, c.dgm.nz) == (32, 128)
  assert (w.dgm.variant, w.dgm.ngf, w.dgm.smax, w.dgm.lambda_ru, w.dgm.eval_every) == (
    "w",
    6,
    1e4,
    0.08,
    2,
  )
  assert (a.dgm.variant, a.dgm.ngf, a.dgm.smax, a.dgm.lambda_ru, a.dgm.eval_every) == (
    "a",
    20,
    1e5,
    0.01,
    5,
  )
  s = _load("dgm_svhn")("dgmw")
  assert (s.batch_size, s.epochs, s.seed, s.dgm.lr_d, s.dgm.lr_g, s.dgm.lambda_ru) == (
    64,
    151,
    100,
    5e-4,
    5e-4,
    0.001,
  )
  i = _load("dgm_imagenet50")()
  assert (
    i.batch_size,
    i.epochs,
    i.dgm.lr_d,
    i.dgm.lambda_gp,
    i.dgm.aux_g,
    i.dgm.reinit_d,
    i.dgm.ngf,
  ) == (70, 101, 2e-4, 0.6, True, False, 64)
  with pytest.raises(ConfigError, match="no ILSVRC-2012 folder"):  # no data.path given
    validate(i)
  with pytest.raises(ValueError, match="use one of dgmw, dgma, jt"):
    _load("dgm_mnist")("dgmx")
