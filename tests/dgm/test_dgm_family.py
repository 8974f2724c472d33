"""DGM's two G families (methods/dgm/dcgan.py, methods/dgm/imagenet.py) are classes behind one
protocol (methods/dgm/family.py): both implement every member with the protocol's signature,
and DGM's algorithm and summaries ask a family for protocol members only."""

import ast
import inspect
import os

from dynamos_jax.methods.dgm import dgm as dgm_module
from dynamos_jax.methods.dgm import replay as dgm_replay
from dynamos_jax.methods.dgm import summary as dgm_summary
from dynamos_jax.methods.dgm.dcgan import DCGANFamily
from dynamos_jax.methods.dgm.family import GeneratorFamily
from dynamos_jax.methods.dgm.imagenet import ResNetFamily

FAMILIES = (DCGANFamily, ResNetFamily)


def _methods() -> list[str]:
  return sorted(GeneratorFamily.__abstractmethods__)


def _attributes() -> list[str]:
  """The protocol's class attributes (its ClassVar annotations)."""
  return [n for n, a in GeneratorFamily.__annotations__.items() if "ClassVar" in str(a)]


def _parameters(function) -> list[tuple]:
  return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _asked(module) -> set[str]:
  """The names the module reads off a family: ``family.X``, ``self.family.X``,
  ``method.family.X`` (code only: docstrings and comments do not count)."""
  names = set()
  for node in ast.walk(ast.parse(inspect.getsource(module))):
    if not isinstance(node, ast.Attribute):
      continue
    owner = node.value
    if (isinstance(owner, ast.Name) and owner.id == "family") or (
      isinstance(owner, ast.Attribute) and owner.attr == "family"
    ):
      names.add(node.attr)
  return names


def test_the_protocol_is_read():
  assert len(_methods()) >= 20 and _attributes() == ["LAYERS"], (_methods(), _attributes())


def test_both_families_implement_every_member_with_the_protocols_signature():
  for family in FAMILIES:
    assert not family.__abstractmethods__, (family.__name__, family.__abstractmethods__)
    for name in _methods():
      own, protocol = getattr(family, name), getattr(GeneratorFamily, name)
      assert own is not protocol, (family.__name__, name)
      assert _parameters(own) == _parameters(protocol), (family.__name__, name)
    for name in _attributes():
      value = getattr(family, name, None)
      assert isinstance(value, tuple) and value and all(isinstance(v, str) for v in value), (
        family.__name__,
        name,
        value,
      )
    family(method=None)  # a family holds the method only


def test_dgm_and_its_summaries_ask_a_family_for_protocol_members_only():
  members = set(_methods()) | set(_attributes())
  asked = {m.__name__: _asked(m) for m in (dgm_module, dgm_summary, dgm_replay)}
  for module, names in asked.items():
    assert names <= members, (module, names - members)
  # Not vacuous: every protocol method is asked for (an unused one would not belong).
  assert set(_methods()) <= set().union(*asked.values()), set(_methods()) - set().union(
    *asked.values()
  )


def test_no_two_dgm_modules_differ_by_a_suffix_only():
  """One module per idea: no ``x.py`` beside an ``x_suffix.py``."""
  folder = os.path.dirname(dgm_module.__file__)
  names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py"))
  pairs = [(a, b) for a in names for b in names if b.startswith(a + "_")]
  assert not pairs, pairs
