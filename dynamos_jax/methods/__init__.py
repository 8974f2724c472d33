"""Continual-learning methods, by config name.

A method says whether its network has agents, whether it keeps a replay
buffer and how it fills it, and computes the loss of one training step
(``Method.loss``); the trainer does the rest.
"""

from dynamos_jax.methods.base import Batch, Method, StepOutput
from dynamos_jax.methods.baseline import Baseline
from dynamos_jax.methods.derpp import DERpp
from dynamos_jax.methods.dynamos import Dynamos, DynamosNoBuffer
from dynamos_jax.methods.er import ER
from dynamos_jax.methods.joint import Joint
from dynamos_jax.methods.sgd import SGD

REGISTRY: dict[str, type[Method]] = {
    "dynamos": Dynamos,
    "dynamos_nobuffer": DynamosNoBuffer,
    "sgd": SGD,
    "joint": Joint,
    "baseline": Baseline,
    "er": ER,
    "derpp": DERpp,
}


def get_method(config) -> Method:
  """The method named by ``config.method``, built from the config."""
  return REGISTRY[config.method].from_config(config)


__all__ = ["Batch", "Method", "StepOutput", "REGISTRY", "get_method"]
