"""A step's two train-mode passes side by side on two devices (``train.parallel_passes``).

Dynamos' step runs two forwards, the current batch and the replay batch
(docs/dynamos.md#one-training-step). In train mode BatchNorm normalises with
batch statistics, so the two passes are independent computations: only the running statistics chain
(the replay pass updates what the current pass left). XLA:CPU runs one
program's independent convolution chains one after the other, but two
devices' programs side by side (1.45x on two independent chains:
docs/speed.md#seeds-devices-and-loops-on-a-cpu-2026-11-21). Here the parameters are
replicated on a two-device mesh; each device takes one pass (its inputs stacked along a leading axis
of 2, and picked by the device's index), differentiates its pass's share of the loss, and one
all-reduce sums the two gradients (the gradient of the whole loss, the sum
of the two passes' terms) together with whatever else each pass
contributes (its metrics, its share of the running statistics).

One all-reduce of one flat vector, not one collective per leaf: a
collective between host devices is a rendezvous of their threads, and a
step with hundreds of them ran slower than the one-device step.

The running statistics: the one-device step computes, per BN layer,
``s1 = m s0 + (1 - m) mu_c`` then ``s2 = m s1 + (1 - m) mu_r``. The replay
device runs its pass from zero statistics, so Flax's own update leaves
exactly ``(1 - m) mu_r`` there; the current device contributes ``m s1``,
and the sum is the one-device formula, term for term (``running_stats_share``).
"""

from typing import Any, Callable

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import numpy as np

from dynamos_jax.errors import ConfigError

AXIS = "passes"
# BatchNorm's momentum in the ResNet and its agents (methods/dynamos/resnet.py, Flax's convention).
BN_MOMENTUM = 0.9


def pass_mesh() -> Mesh:
  """The first two devices as a mesh over the ``passes`` axis."""
  devices = jax.devices()
  if len(devices) < 2:
    raise ConfigError(
      "train.parallel_passes needs two devices; on a CPU set "
      "--config.train.host_devices=2 (or set train.parallel_passes=False)"
    )
  return Mesh(np.array(devices[:2]), (AXIS,))


def sum_of_passes(pass_loss: Callable, params, passes) -> tuple[Any, Any]:
  """The summed gradient and contributions of two passes, each pass on its own device.

  Args:
    pass_loss: ``(params, one_pass) -> (loss, contribution)``, one pass's
      share of the step's loss and a pytree of float32 arrays to be summed
      over the two passes (a pass puts zeros where the other's values go).
    params: the parameters (replicated on both devices).
    passes: a pytree whose leaves have a leading axis of 2 (current, replay).

  Returns:
    ``(d(loss_0 + loss_1)/d params, contribution_0 + contribution_1)``.
  """

  def per_device(params, passes):
    # Both passes' inputs reach both devices (replicated: sharding the stacked
    # axis instead made XLA exchange every leaf with an all-to-all); each device
    # picks its own.
    index = jax.lax.axis_index(AXIS)
    one_pass = jax.tree.map(lambda x: x[index], passes)
    # This device's own copy: its gradient is this pass's alone (no implicit sum).
    params = jax.lax.pcast(params, AXIS, to="varying")
    grads, contribution = jax.grad(pass_loss, has_aux=True)(params, one_pass)
    flat, unravel = ravel_pytree((grads, contribution))
    return unravel(jax.lax.psum(flat, AXIS))

  return jax.shard_map(per_device, mesh=pass_mesh(), in_specs=(P(), P()), out_specs=P())(
    params, passes
  )


def running_stats_share(stats, is_replay: jax.Array, replay_has_rows: jax.Array):
  """A pass's share of the running statistics after both passes.

  Args:
    stats: the pass's statistics after its forward: the current pass's ``s1``
      (from the step's ``s0``); the replay pass's from all-zero statistics,
      ``(1 - m) mu_r`` (zeros if its draw had no real row).
    is_replay: bool [], which pass this is.
    replay_has_rows: bool [], whether the replay draw had a real row (without
      one the one-device step leaves ``s1`` as it is).

  Summed over the two passes: ``m s1 + (1 - m) mu_r``, or ``s1``.
  """
  return jax.tree.map(
    lambda s: jnp.where(is_replay, s, jnp.where(replay_has_rows, BN_MOMENTUM * s, s)), stats
  )


def share(tree, mine: jax.Array):
  """``tree`` where ``mine``, zeros elsewhere (a pass's slots of a contribution)."""
  return jax.tree.map(lambda x: jnp.where(mine, x, jnp.zeros_like(x)), tree)
