"""D's BatchNorm statistics for evaluation, ``dgm.d_statistics`` (docs/dgm.md#batchnorm-statistics).

``running`` (the authors' code): D is evaluated with the running statistics
its training leaves. Every training-mode forward moves them, and a task's
last ones are the critic and G steps' batches of the current class's real
images and G's fakes, so after a task they describe the current class, not
the seen ones.

``replay``: at a task's end (and before each ``best_valid`` evaluation) D's
evaluation statistics are those of one training-mode batch of what the
learner has then: n real training images of the current class and n of G's
replay samples of each past class (n = ``dgm.statistics_images``). Training
is unchanged (it still uses and moves the running statistics, kept in
``state.d_stats``); only ``predict`` reads ``state.eval_stats``. No real
image of a past class is used.
"""

import functools

import jax
import jax.numpy as jnp

from dynamos_jax.methods.dgm.discriminator import BN_MOMENTUM, to_unit

CHOICES = ("running", "replay")
STATS = 7  # fold_in constant of the replay samples' key (methods/dgm/dgm.py holds the others)


def empty(choice: str, d_stats: dict) -> dict:
  """The state's ``eval_stats`` for a fresh D: {} for ``running`` (no leaves: the
  checkpoint layout of such runs is unchanged), else D's own statistics."""
  return {} if choice == "running" else jax.tree.map(jnp.copy, d_stats)


def batch_statistics(method, d: dict, d_stats: dict, x: jax.Array) -> dict:
  """D's per-layer BN statistics (mean, biased variance) of one training-mode batch x
  [N, 32, 32, C] in [-1, 1], shaped as ``d_stats``: D in eval mode with them computes on x
  what D in training mode does."""
  # From zeros, one update leaves (1 - momentum) x the batch's statistics.
  zeros = jax.tree.map(jnp.zeros_like, d_stats)
  _, _, updated = method._d_apply(d, zeros, x, True)
  return jax.tree.map(lambda s: s / (1.0 - BN_MOMENTUM), updated)


@functools.partial(jax.jit, static_argnames=("method", "t", "n"))
def _replayed(state, real, key, *, method, t: int, n: int) -> dict:
  """``batch_statistics`` of ``real`` [n, H, W, C] uint8 and n of G's samples of each
  class c < t."""
  family = method.family
  keys = jax.random.split(key, max(t, 1))
  parts = [family.generate(state, family.class_noise(keys[c], n, c), c) for c in range(t)]
  x = jnp.concatenate([*parts, to_unit(real)])
  return batch_statistics(method, state.d, state.d_stats, x)


def refresh(method, state, task):
  """``state`` with ``eval_stats`` re-estimated for D as it is now (``replay``), else as
  given. ``task``: the hooks' ``TaskData`` of the current task (its first n images)."""
  if method.d_statistics == "running":
    return state
  t = task.index
  n = min(method.statistics_images, task.size)
  real = task.batches(n).batch(0).images
  key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.key), STATS), t)
  return state.replace(eval_stats=_replayed(state, real, key, method=method, t=t, n=n))
