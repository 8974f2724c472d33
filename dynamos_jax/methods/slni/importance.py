"""Parameter importance (MAS, EWC) and neuron importance (SLNI's alpha), and consolidation.

After a task, one pass over its training data in fixed-size padded batches
(docs/slni.md#importance-and-its-accumulation), the model in evaluation mode:

  J_b   = sum over the batch's real samples of the objective:
          MAS: ||f(x)||^2 (the squared L2 norm of the logits, no labels);
          EWC: -log softmax(f(x))_y (true labels: the empirical Fisher)
  Omega = (1/N) sum_b |dJ_b/dtheta| (MAS)  or  (1/N) sum_b (dJ_b/dtheta)^2 (EWC)
  alpha = (1/N) sum_m |dJ/dz^m| per hidden unit (z: the pre-activation)

Batch granularity, as the reference code (the MAS and EWC papers take the
gradient per sample). ``consolidate`` then adds Omega to the running sum,
adds alpha (or averages it over tasks) and sets the anchor theta* to the
current parameters. Everything is a pure, jitted function of arrays.
"""

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

OBJECTIVES = ("mas", "ewc")


@flax.struct.dataclass
class Consolidation:
  """What importance-based methods carry across tasks (zeros before the first task ends).

  omega: params-shaped, the summed parameter importance; anchor: params-shaped
  theta*; alpha: a tuple of [N_l], the neuron importance per hidden layer;
  tasks: int32 [], tasks consolidated.
  """

  omega: Any
  anchor: Any
  alpha: tuple[jax.Array, ...]
  tasks: jax.Array

  @classmethod
  def empty(cls, params, widths: tuple[int, ...]) -> "Consolidation":
    zeros = jax.tree.map(jnp.zeros_like, params)
    return cls(zeros, params, tuple(jnp.zeros((n,)) for n in widths), jnp.zeros((), jnp.int32))


def penalty(consolidation: Consolidation, params) -> jax.Array:
  """sum_k Omega_k (theta_k - theta*_k)^2 (times lambda_Omega in the loss)."""
  terms = jax.tree.map(
    lambda o, p, a: jnp.sum(o * (p - jax.lax.stop_gradient(a)) ** 2),
    consolidation.omega,
    params,
    consolidation.anchor,
  )
  return sum(jax.tree.leaves(terms))


def _objective(logits: jax.Array, labels: jax.Array, mask: jax.Array, kind: str) -> jax.Array:
  per_sample = (
    jnp.sum(logits**2, -1)
    if kind == "mas"
    else optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  )
  return jnp.sum(jnp.where(mask, per_sample, 0.0))


def estimate(forward: Callable, params, data, kind: str):
  """Omega (params-shaped) and alpha (a tuple of [N_l]) of one finished task.

  Args:
    forward: ``forward(params, images, probes) -> (logits [B, K], pre-activations
      tuple of [B, N_l])`` in evaluation mode, the task's head already chosen.
    params: the parameters after the task.
    data: the task's samples in fixed order as padded batches: an ``EpochData``
      (``data.batch(i)`` is batch i as the benchmark transforms it).
    kind: ``mas`` or ``ewc``.
  """
  if kind not in OBJECTIVES:
    raise ValueError(f"unknown importance {kind!r}; expected one of {OBJECTIVES}")
  first = data.batch(0)
  _, pre = jax.eval_shape(lambda p, x: forward(p, x, None), params, first.images)
  zero_probes = tuple(jnp.zeros(z.shape, z.dtype) for z in pre)

  def body(carry, row):
    omega, alpha = carry
    batch = data.batch(row)

    def objective(p, probes):
      logits, _ = forward(p, batch.images, probes)
      return _objective(logits, batch.labels, batch.mask, kind)

    g_params, g_probes = jax.grad(objective, argnums=(0, 1))(params, zero_probes)
    grow = jnp.abs if kind == "mas" else jnp.square
    omega = jax.tree.map(lambda o, g: o + grow(g), omega, g_params)
    alpha = tuple(a + jnp.sum(jnp.abs(g), 0) for a, g in zip(alpha, g_probes))
    return (omega, alpha), None

  start = (
    jax.tree.map(jnp.zeros_like, params),
    tuple(jnp.zeros(z.shape[1:], z.dtype) for z in pre),
  )
  (omega, alpha), _ = jax.lax.scan(body, start, jnp.arange(data.mask.shape[0]))
  count = jnp.maximum(jnp.sum(data.mask), 1).astype(jnp.float32)
  return jax.tree.map(lambda o: o / count, omega), tuple(a / count for a in alpha)


def consolidate(state: Consolidation, omega, alpha, params, alpha_mean: bool) -> Consolidation:
  """Adds a finished task's importance: Omega summed; alpha summed or averaged over
  tasks (``alpha_mean``); the anchor becomes ``params``."""
  k = state.tasks.astype(jnp.float32)
  if alpha_mean:
    new_alpha = tuple((k * a + b) / (k + 1.0) for a, b in zip(state.alpha, alpha))
  else:
    new_alpha = tuple(a + b for a, b in zip(state.alpha, alpha))
  return Consolidation(
    jax.tree.map(jnp.add, state.omega, omega), params, new_alpha, state.tasks + 1
  )
