"""Continual-learning methods, by config name.

Each module of this package defines methods and registers them with
``@register`` (methods/base.py has the lifecycle every method follows); the
package imports them all, so adding a method is adding a file.
"""

import importlib
import pkgutil

from dynamos_jax.methods.base import REGISTRY, Method, register

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")


def get_method(config, benchmark) -> Method:
  """The method named by ``config.method`` for a run on ``benchmark``."""
  return REGISTRY[config.method].from_config(config, benchmark)


__all__ = ["Method", "REGISTRY", "get_method", "register"]
