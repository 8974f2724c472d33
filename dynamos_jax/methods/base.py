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
  """Base class. Subclasses set the flags and implement ``loss``.

  The flags tell the trainer what to build around the loss: agents in the
  network (``gated``, which also brings the warm-up of spec 7), a reservoir
  buffer (``uses_buffer``), how many independent replay minibatches each step
  draws from it (``replay_draws``), whether only correctly classified samples
  are written into it (``insert_if_correct``, the reference's add-if-correct
  rule) and whether all tasks are trained at once (``joint``).
  """

  gated: bool = False
  uses_buffer: bool = False
  replay_draws: int = 1
  insert_if_correct: bool = True
  joint: bool = False

  @classmethod
  def from_config(cls, config) -> "Method":
    del config
    return cls()

  @abc.abstractmethod
  def loss(self, model, params, batch_stats, batch: Batch,
           replays: tuple[tuple[Replay, jax.Array], ...],
           key: jax.Array) -> tuple[jax.Array, StepOutput]:
    """The step's loss, differentiable w.r.t. ``params``.

    Args:
      model: the flax module.
      params, batch_stats: the network's variables.
      batch: the current batch.
      replays: ``replay_draws`` pairs (replay minibatch, bool [B_M] mask of its
        real rows), drawn independently; empty for buffer-free methods.
      key: PRNG key for this step's stochastic gates.
    """


def forward(model, params, batch_stats, images: jax.Array, mask: jax.Array, mode: str = "off",
            key: jax.Array | None = None):
  """A train-mode forward over the real rows ``mask`` [B] of ``images``.

  Returns ``(logits [B, K], aux, batch_stats)``: BN normalises with, and
  updates its running statistics from, the real rows only. With no real row
  (a replay draw from an empty buffer) statistics over zero samples would be
  NaN, so the forward normalises over all (zero) rows and the statistics are
  left as they were; the masked loss terms are zero anyway.
  """
  has_rows = jnp.any(mask)
  rngs = {"gates": key} if key is not None else None
  (logits, aux), updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                       mode, True, jnp.where(has_rows, mask, True), rngs=rngs,
                                       mutable=["batch_stats"])
  stats = jax.tree.map(lambda new, old: jnp.where(has_rows, new, old),
                       updates["batch_stats"], batch_stats)
  return logits, aux, stats


def accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Fraction of the real rows classified correctly."""
  correct = (jnp.argmax(logits, -1) == labels) & mask
  return jnp.sum(correct) / jnp.maximum(jnp.sum(mask), 1)


def no_attention(batch: Batch) -> jax.Array:
  """[B, 0]: agent-free methods store no attention vectors."""
  return jnp.zeros((batch.labels.shape[0], 0), jnp.float32)


def plain_cross_entropy(model, params, batch_stats, batch: Batch):
  """Cross-entropy of an agent-free, train-mode forward (SGD, and Dynamos' warm-up)."""
  logits, _, stats = forward(model, params, batch_stats, batch.images, batch.mask)
  ce = losses.cross_entropy(logits, batch.labels, batch.mask)
  metrics = {"loss": ce, "ce": ce, "train_accuracy": accuracy(logits, batch.labels, batch.mask)}
  return ce, StepOutput(stats, metrics, logits, no_attention(batch))
