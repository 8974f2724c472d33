"""What every method provides to the trainer."""

import abc
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from dynamos_jax import losses
from dynamos_jax.buffer import Replay


@flax.struct.dataclass
class Batch:
  """A padded batch of the current stream.

  images: uint8 [B, H, W, 3]; labels: int32 [B]; mask: bool [B] (False = padding).
  """
  images: jax.Array
  labels: jax.Array
  mask: jax.Array


@flax.struct.dataclass
class StepOutput:
  """Auxiliary output of ``Method.loss``.

  batch_stats: BN running statistics after the step's forward passes.
  metrics: dict of scalars (loss terms, keep ratios, ...).
  logits: [B, K] of the current batch (pre-update), for buffer insertion.
  attention: [B, D] of the current batch, for buffer insertion (D may be 0).
  """
  batch_stats: Any
  metrics: dict[str, jax.Array]
  logits: jax.Array
  attention: jax.Array


class Method(abc.ABC):
  """Base class. Subclasses set the flags and implement ``loss``."""

  gated: bool = False  # the network has agents
  uses_buffer: bool = False  # a reservoir buffer is sampled and filled

  @classmethod
  def from_config(cls, config) -> "Method":
    return cls()

  @abc.abstractmethod
  def loss(self, model, params, batch_stats, batch: Batch, replay: Replay | None,
           replay_mask: jax.Array | None, key: jax.Array) -> tuple[jax.Array, StepOutput]:
    """The step's loss, differentiable w.r.t. ``params``.

    Args:
      model: the flax module.
      params, batch_stats: the network's variables.
      batch: the current batch.
      replay: a replay minibatch (None for buffer-free methods).
      replay_mask: [B_M] bool, real rows of ``replay``.
      key: PRNG key for this step's stochastic gates.
    """


def plain_cross_entropy(model, params, batch_stats, batch: Batch):
  """Cross-entropy of an agent-free, train-mode forward (SGD, and Dynamos' warm-up)."""
  (logits, _), updates = model.apply({"params": params, "batch_stats": batch_stats},
                                     batch.images, "off", True, batch.mask,
                                     mutable=["batch_stats"])
  ce = losses.cross_entropy(logits, batch.labels, batch.mask)
  correct = (jnp.argmax(logits, -1) == batch.labels) & batch.mask
  metrics = {"loss": ce, "ce": ce,
             "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1)}
  empty = jnp.zeros((batch.labels.shape[0], 0), jnp.float32)
  return ce, StepOutput(updates["batch_stats"], metrics, logits, empty)
