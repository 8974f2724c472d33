"""Several seeds in one program, the seed axis sharded over the devices.

A multi-seed run (seeds.py) stacks every seed's TrainState along a leading axis [S] and
every seed's batch order along the leading axis of EpochData's ``order``,
``mask`` and ``rotation``; the training images are shared. ``over_seeds``
turns the one-seed step into the S-seed step, and ``seed_mesh`` lays the seed
axis over the devices. Seeds never exchange data, so the sharded program has
no collectives: each device runs its own seeds (its own core on a CPU exposed
as several host devices, ``train.host_devices``). Across hosts
(``train.distributed``) the mesh spans every process's devices; the host-side
work (task hooks, evaluation, checkpoints) sees the whole state gathered by
``to_host`` on every process, and only process 0 writes files. A sweep's members
(sweep.py) are stacked the same way; ``over_seeds`` then takes one step per member
(unroll) or a step built from each member's traced hyperparameters (vmap).
"""

import os
from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from dynamos_jax import cpu_kernels
from dynamos_jax.errors import InputError

AXIS = "seeds"


def use_host_devices(count: int) -> None:
  """Exposes the CPU as ``count`` XLA devices, each then with YNNPACK's one-core
  convolutions (``cpu_kernels``); must run before JAX starts its backends."""
  if count <= 0:
    return
  cpu_kernels.configure(count)
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # The backends have started (e.g. JAX ran earlier in this process).
    if jax.device_count() != count and jax.default_backend() == "cpu":
      raise InputError(
        f"train.host_devices={count} must be set before JAX starts; start "
        f"a fresh process, or call jax.config.update('jax_num_cpu_devices', "
        f"{count}) right after importing jax"
      ) from None


def use_compilation_cache(directory: str) -> None:
  """Keeps compiled programs in ``directory`` (JAX's persistent cache) unless it is ""
  or JAX already has a cache directory (e.g. from JAX_COMPILATION_CACHE_DIR)."""
  if not directory or jax.config.jax_compilation_cache_dir:
    return
  path = os.path.expanduser(directory)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise InputError(
      f"train.compilation_cache={directory!r} cannot be created ({e.strerror}); "
      f"give a writable directory, or --config.train.compilation_cache= to turn it off"
    ) from None
  jax.config.update("jax_compilation_cache_dir", path)


def start(config) -> None:
  """Before anything touches a device: the host devices, compilation cache and multi-host
  setup of ``config.train``."""
  use_host_devices(int(config.train.host_devices))
  use_compilation_cache(config.train.compilation_cache)
  if config.train.distributed:
    # JAX finds the coordinator, process count and id on SLURM, Open MPI and
    # TPU pods, and reads JAX_COORDINATOR_ADDRESS; elsewhere the process count
    # and id come from JAX_NUM_PROCESSES and JAX_PROCESS_ID (docs/running.md#multi-host).
    counts = {
      name: int(os.environ[var])
      for name, var in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID"))
      if var in os.environ
    }
    # CPU processes gather the state through gloo (the other backends bring their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**counts)


def _is_key(x) -> bool:
  """A typed PRNG key array (its raw data travels; the key type is rewrapped)."""
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree):
  """A pytree's arrays as host NumPy arrays, gathered from every process when the
  arrays span several (a multi-host run; every process must call it). Typed PRNG
  keys come back typed."""

  def get(x):
    if _is_key(x):
      return jax.random.wrap_key_data(get(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)

  return jax.tree.map(get, tree)


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every process (no-op in a one-process run)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def seed_mesh(num_seeds: int, max_devices: int = 0) -> Mesh | None:
  """A 1-D mesh over the most devices (at most ``max_devices``; 0: no limit) that
  divide the seeds evenly; None for one device."""
  devices = jax.devices()
  limit = min(len(devices), num_seeds, max_devices or len(devices))
  n = max(d for d in range(1, limit + 1) if num_seeds % d == 0)
  return Mesh(np.array(devices[:n]), (AXIS,)) if n > 1 else None


def resolve_strategy(strategy: str) -> str:
  if strategy == "auto":
    return "unroll" if jax.default_backend() == "cpu" else "vmap"
  return strategy


def _data_axes(data, seed_axis, shared_axis):
  """EpochData's per-seed fields get ``seed_axis``, the shared ones ``shared_axis``."""
  per_seed = data.per_seed_fields()
  return data.replace(
    **{
      name: seed_axis if name in per_seed else shared_axis for name in data.SHARED + tuple(per_seed)
    }
  )


def over_seeds(
  step: Callable | list[Callable],
  strategy: str,
  mesh: Mesh | None,
  traced: tuple[Callable, Any] | None = None,
) -> Callable:
  """The step of S seeds from the step of one:
  ``(state[S], data, position) -> (state[S], metrics[S])``.

  Args:
    step: the pure one-seed step ``(state, data, position) -> (state, metrics)``;
      for a sweep under ``unroll``, a list of S such steps, member i's own
      (its method's hyperparameters as constants).
    strategy: ``vmap`` (one batched op per op) or ``unroll`` (the step once
      per seed, stacked; see config ``train.seed_strategy``).
    mesh: shard the seed axis over these devices (None: one device).
    traced: for a sweep under ``vmap``: ``(make_step, values)``, ``values`` a
      pytree of [S] arrays (each member's hyperparameters) and
      ``make_step(values_i)`` the one-member step with those values traced.
  """
  strategy = resolve_strategy(strategy)
  steps = step if isinstance(step, list) else None
  if strategy == "vmap" and steps is not None:
    raise InputError(
      "a list of per-member steps cannot be vmapped: pass traced=(make_step, "
      "values) or use seed_strategy=unroll"
    )
  if steps is not None and mesh is not None:
    # Every device runs the one sharded program, so per-member constants would
    # need a branch per device (lax.switch on the device index), which XLA:CPU
    # rounds differently from the member's setting alone (measured).
    raise InputError(
      "an unrolled sweep cannot be sharded over devices: set "
      "--config.train.seed_devices=1, or seed_strategy=vmap"
    )

  def unrolled(members, state, data, position):
    return stack(
      [
        members[i](
          index(state, i),
          data.replace(**{n: getattr(data, n)[i] for n in data.per_seed_fields()}),
          position,
        )
        for i in range(len(members))
      ]
    )

  def local(state, data, position, values):
    count = jax.tree.leaves(state)[0].shape[0]
    if strategy == "vmap":
      axes = _data_axes(data, 0, None)
      if traced is None:
        return jax.vmap(step, in_axes=(0, axes, None))(state, data, position)
      make_step = traced[0]
      return jax.vmap(lambda s, d, v: make_step(v)(s, d, position), in_axes=(0, axes, 0))(
        state, data, values
      )
    return unrolled(steps or [step] * count, state, data, position)

  values = None if traced is None else traced[1]
  if mesh is None:
    return lambda state, data, position: local(state, data, position, values)

  def sharded(state, data, position):
    specs = (P(AXIS), _data_axes(data, P(AXIS), P()), P(), P(AXIS))
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(AXIS))(
      state, data, position, values
    )

  return sharded


def index(tree, i: int):
  """Seed ``i`` of a stacked pytree."""
  return jax.tree.map(lambda x: x[i], tree)


def stack(trees: list) -> Any:
  """Stacks pytrees of one seed each along a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def place(tree, mesh: Mesh | None, spec: P):
  """Puts a pytree on the mesh (``P(AXIS)``: split by seed; ``P()``: replicated)."""
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, spec)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):  # Every process holds the whole value and builds its own shards from it.
    if _is_key(x):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x if x.sharding == sharding else jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)
