"""dynamos_jax: continual learning in JAX/Flax on one trainer.

Three systems and their baselines: Dynamos (dynamically modular and sparse
general continual learning) with ER, DER++ and the rehearsal baseline; SLNI
(selfless sequential learning) with MAS and EWC; DGM (dynamic generative
memory, DGMw and DGMa). Each learner family lives in ``methods/<family>/``;
the trainer, data, benchmarks, checkpoints and commands are shared.

From Python (docs/api.md): ``load_config``, ``train`` (returns ``Results``) and
``benchmarks.from_arrays`` for a benchmark of your own arrays.
"""

from dynamos_jax import cpu_kernels

__version__ = "0.2.0"

cpu_kernels.configure()

_API = ("Results", "load_config", "train")


def __getattr__(name: str):
  """The API's names, imported on first use: the commands' ``--help`` stays quick."""
  if name in _API:
    from dynamos_jax import api

    return getattr(api, name)
  if name == "benchmarks":
    import importlib

    return importlib.import_module("dynamos_jax.benchmarks")
  raise AttributeError(f"module 'dynamos_jax' has no attribute {name!r}")


__all__ = [*_API, "benchmarks"]
