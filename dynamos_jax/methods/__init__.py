"""Continual-learning methods, by config name.

Each learner family is a subpackage (``dynamos``, ``slni``, ``dgm``) whose
``__init__`` imports the modules that define its methods with ``@register``
(methods/base.py has the lifecycle every method follows); this package imports
every family, so adding a family is adding a folder, and adding a method to
one is adding a file and a line to its ``__init__``.
"""

import importlib
import pkgutil

from dynamos_jax.methods.base import REGISTRY, Method, register

for _module in pkgutil.iter_modules(__path__):
  if _module.ispkg:
    importlib.import_module(f"{__name__}.{_module.name}")


def get_method(config, benchmark) -> Method:
  """The method named by ``config.method`` for a run on ``benchmark``."""
  return REGISTRY[config.method].from_config(config, benchmark)


__all__ = ["Method", "REGISTRY", "get_method", "register"]
