"""Which XLA:CPU kernels run the convolutions: Eigen's, on every core, by default.

XLA:CPU (jaxlib 0.10) hands convolutions, dots and reductions to YNNPACK. At this
library's shapes (batch 10 to 64, images of at most 32 x 32) a YNNPACK convolution runs
on one core, while Eigen's convolution, which XLA:CPU uses for the convolutions it does
not give YNNPACK, spreads over the intra-op thread pool and takes about half the time
(docs/speed.md#cpu-switches). Reductions stay with YNNPACK (BatchNorm's statistics are
slower without it), and so does everything when a process exposes several host devices:
each device then runs its own work on its own core, where YNNPACK's one-core kernels are
the faster ones.

The choice is an XLA flag, read once when JAX starts its CPU backend, so it is made for
the whole process: when dynamos_jax is imported, and again by ``parallel.use_host_devices`` once the
run's host devices are known. ``DYNAMOS_JAX_CPU_CONVOLUTIONS=ynnpack`` keeps XLA's own
default, and an ``--xla_cpu_experimental_ynn_fusion_type`` already in ``XLA_FLAGS`` is the
user's and left alone. The kernels change float rounding only; ``in_use`` names them
(the golden outputs record it).
"""

import os
import warnings

import jax
from jax._src import xla_bridge

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
ENV = "DYNAMOS_JAX_CPU_CONVOLUTIONS"
CHOICES = ("eigen", "ynnpack")
# YNNPACK keeps the reductions; convolutions and dots go to XLA's own (Eigen) kernels.
_EIGEN = f"{FLAG}=reduce"


def _flags() -> list[str]:
  return os.environ.get("XLA_FLAGS", "").split()


def _user_set() -> bool:
  return any(f.startswith(FLAG) and f != _EIGEN for f in _flags())


def wanted(host_devices: int = 1) -> str:
  """The kernels this library asks for: ``ynnpack`` with several host devices or when
  ``DYNAMOS_JAX_CPU_CONVOLUTIONS=ynnpack``, else ``eigen``."""
  choice = os.environ.get(ENV, "").strip().lower() or "eigen"
  if choice not in CHOICES:
    warnings.warn(f"{ENV}={choice!r} is not one of {CHOICES}; using eigen", stacklevel=2)
    choice = "eigen"
  return "ynnpack" if host_devices > 1 else choice


def configure(host_devices: int = 1) -> None:
  """Sets ``XLA_FLAGS`` for ``wanted(host_devices)`` if JAX has not started its backends
  and the user did not set the flag; otherwise changes nothing (``in_use`` tells)."""
  if _user_set() or xla_bridge.backends_are_initialized():
    return
  flags = [f for f in _flags() if f != _EIGEN]
  if wanted(host_devices) == "eigen":
    flags.append(_EIGEN)
  os.environ["XLA_FLAGS"] = " ".join(flags)


def in_use() -> str:
  """``eigen``, ``ynnpack`` or the user's flag: what ``XLA_FLAGS`` asks XLA:CPU for."""
  mine = [f for f in _flags() if f.startswith(FLAG)]
  if not mine:
    return "ynnpack"
  return "eigen" if mine[-1] == _EIGEN else mine[-1]


def rolled_loops_slow() -> bool:
  """Whether convolution gradients inside a rolled loop (``lax.scan``) run on a slow
  path: on a CPU with YNNPACK's convolutions
  (docs/speed.md#seeds-devices-and-loops-on-a-cpu-2026-11-21); with Eigen's, DGM's
  iteration runs as fast scanned as unrolled (docs/speed.md#cpu-switches)."""
  return jax.default_backend() == "cpu" and in_use() != "eigen"
