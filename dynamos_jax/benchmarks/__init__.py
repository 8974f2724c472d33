"""Continual-learning benchmarks, by config name (``--config.dataset``).

Each module of this package defines benchmarks and registers them with
``@register`` (benchmarks/base.py has what every benchmark provides); the
package imports them all, so adding a benchmark is adding a file.
"""

import importlib
import pkgutil

from dynamos_jax.benchmarks.base import KINDS, REGISTRY, Benchmark, DeviceData, TaskData, register

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")


from dynamos_jax.benchmarks.arrays import from_arrays  # noqa: E402  (after the modules)


def build(config, data: DeviceData, key, joint: bool) -> Benchmark:
  """The benchmark named by ``config.dataset`` over ``data``, drawn from ``key``."""
  return REGISTRY[config.dataset](config, data, key, joint)


__all__ = [
  "KINDS",
  "REGISTRY",
  "Benchmark",
  "DeviceData",
  "TaskData",
  "build",
  "from_arrays",
  "register",
]
