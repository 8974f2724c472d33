"""Continual-learning methods, by config name.

A method says whether its network has agents, whether it keeps a replay
buffer, and computes the loss of one training step (``Method.loss``).
"""

from dynamos_jax.methods.base import Batch, Method, StepOutput
from dynamos_jax.methods.dynamos import Dynamos
from dynamos_jax.methods.sgd import SGD

REGISTRY: dict[str, type[Method]] = {
    "dynamos": Dynamos,
    "sgd": SGD,
}


def get_method(config) -> Method:
  """The method named by ``config.method``, built from the config."""
  return REGISTRY[config.method].from_config(config)


__all__ = ["Batch", "Method", "StepOutput", "REGISTRY", "get_method"]
