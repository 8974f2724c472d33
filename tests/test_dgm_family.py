"""The two G families of DGM (methods/dgm_dcgan.py, methods/dgm_imagenet.py) offer the same
functions: the ones dgm_dcgan's docstring lists, which are the ones DGM calls."""

import inspect
import re

from dynamos_jax.methods import dgm_dcgan, dgm_imagenet
from dynamos_jax.methods.dgm import DGM


def _interface() -> dict[str, list[str]]:
  """The function list of dgm_dcgan's docstring: {name: parameter names}."""
  rows = re.findall(r"^  (\w+)\(([^)]*)\)", dgm_dcgan.__doc__, re.M)
  return {name: [p.strip() for p in params.split(",")] for name, params in rows}


def test_both_families_define_every_listed_function_with_its_parameters():
  interface = _interface()
  assert len(interface) >= 12, interface  # the docstring's list was read
  for module in (dgm_dcgan, dgm_imagenet):
    for name, params in interface.items():
      function = getattr(module, name, None)
      assert callable(function), (module.__name__, name)
      names = list(inspect.signature(function).parameters)
      assert names[:len(params)] == params, (module.__name__, name, names)


def test_every_family_function_dgm_calls_is_listed():
  source = inspect.getsource(inspect.getmodule(DGM))
  called = set(re.findall(r"family\.(\w+)\(", source))
  assert called and called <= set(_interface()), called - set(_interface())
