"""The two G families of DGM (methods/dgm/dcgan.py, methods/dgm/imagenet.py) offer the same
functions: the ones dcgan's docstring lists, which are the ones DGM calls; their summary
modules (summary_dcgan.py, summary_resnet.py) the ones summary calls."""

import inspect
import re

from dynamos_jax.methods.dgm import dcgan as dgm_dcgan
from dynamos_jax.methods.dgm import imagenet as dgm_imagenet
from dynamos_jax.methods.dgm import summary as dgm_summary
from dynamos_jax.methods.dgm import summary_dcgan
from dynamos_jax.methods.dgm import summary_resnet
from dynamos_jax.methods.dgm.dgm import DGM


def _interface() -> dict[str, list[str]]:
  """The function list of dcgan's docstring: {name: parameter names}."""
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


def test_both_summary_modules_define_what_dgm_summary_calls_with_the_same_parameters():
  source = inspect.getsource(dgm_summary)
  called = set(re.findall(r"(?:_family\(method\)|family)\.(\w+)", source))
  assert {"arrays", "generate", "samples", "task_exists"} <= called, called
  for name in called:
    a, b = (getattr(m, name, None) for m in (summary_dcgan, summary_resnet))
    assert a is not None and b is not None, name
    if callable(a):
      pa, pb = (list(inspect.signature(f).parameters) for f in (a, b))
      assert pb[:len(pa)] == pa, (name, pa, pb)
