"""The run as a plan of chunks, and the chunk runner that executes one.

A chunk is a span of steps of one epoch of one task, all in one phase: the
unit of host work (logging, progress, checkpoints, resumption). The runner
turns a method's pure step into a jitted one and runs a chunk with no host
sync inside it.
"""

import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import parallel
from dynamos_jax.state import TrainState

# A method's phases of one task: ((phase, steps or None for the rest), ...).
Phases = Callable[[int, int], tuple[tuple[str, int | None], ...]]


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Steps ``[start, stop)`` of one epoch of one task, all in one phase."""

  task: int
  epoch: int
  start: int
  stop: int
  phase: str
  starts_task: bool  # the task's begin hook runs before this chunk
  ends_task: bool  # the task's end hook and evaluation run after this chunk
  ends_epoch: bool = False  # the last chunk of an epoch (the end_epoch hook runs after it)


def plan_chunks(
  batches_per_task: list[int],
  epochs: int,
  phases: Phases,
  chunk_size: int,
  max_steps_per_task: int = 0,
) -> list[Chunk]:
  """The whole run as a list of chunks.

  Args:
    batches_per_task: batches in one epoch of each task.
    epochs: epochs per task.
    phases: ``phases(task, batches) -> ((phase, steps), ..., (phase, None))``,
      the method's static phases of each task (``Method.phases``).
    chunk_size: most steps in a chunk.
    max_steps_per_task: stop each task after this many steps (0: no limit).
  """
  chunks = []
  for task, batches in enumerate(batches_per_task):
    budget = batches * epochs
    if max_steps_per_task:
      budget = min(budget, max_steps_per_task)
    ends, total = [], 0  # (phase, the task step it ends at or None)
    for phase, steps in phases(task, batches):
      total = None if steps is None else total + steps
      ends.append((phase, total))
    done = 0
    for epoch in range(epochs):
      position = 0
      while position < batches and done < budget:
        # Cut at chunk size, the task's step budget and the phase's end.
        stop = min(batches, position + chunk_size, position + budget - done)
        phase, end = next((p, e) for p, e in ends if e is None or done < e)
        if end is not None:
          stop = min(stop, position + end - done)
        ends_task = done + stop - position == budget
        chunks.append(
          Chunk(
            task,
            epoch,
            position,
            stop,
            phase,
            starts_task=done == 0,
            ends_task=ends_task,
            ends_epoch=stop == batches or ends_task,
          )
        )
        done += stop - position
        position = stop
  return chunks


def make_train_step(method, phase: str) -> Callable:
  """The trainer's pure step ``(state, data, position) -> (state, metrics)``.

  Gathers row ``position`` of the epoch ``data``, derives the step's key
  (``fold_in(state.key, state.step)``: no key is used twice) and runs the
  method's step in the static ``phase``.

  Equal methods (frozen dataclasses compare by value) get the same function, so JAX's
  caches, keyed by the function, trace and compile it once per process: a second run of
  one config (a comparison's next seed, a notebook's rerun) starts without compiling.
  """
  try:
    return _cached_train_step(method, phase)
  except TypeError:  # A method with an unhashable field: a fresh function, traced anew.
    return _train_step(method, phase)


def _train_step(method, phase: str) -> Callable:
  def step(state: TrainState, data, position: jax.Array):
    batch = data.batch(position)
    key = jax.random.fold_in(state.key, state.step)
    learner, metrics = method.step(state.learner, batch, key, phase)
    return state.replace(step=state.step + 1, learner=learner), metrics

  return step


# Bounded: each cached function keeps its compiled programs alive.
_cached_train_step = functools.lru_cache(maxsize=16)(_train_step)


def unaliased(tree):
  """``tree`` with every leaf its own buffer (repeated leaves copied).

  The runner donates the state to the step, and XLA refuses to donate one
  buffer twice; a method's ``init`` or hook may well put one array in two
  places (e.g. the weights and their anchor).
  """
  seen = set()

  def own(leaf):
    if id(leaf) in seen:
      return jnp.copy(leaf)
    seen.add(id(leaf))
    return leaf

  return jax.tree.map(own, tree)


def _shapes(tree) -> tuple:
  """What a compiled program is specialised to: the tree and its leaves' shapes and dtypes."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves)


class ChunkRunner:
  """Runs steps ``[start, stop)`` of an epoch; the host syncs only between chunks.

  Two strategies (docs/dynamos.md#chunks-and-compiled-programs): ``loop`` calls
  one jitted, donated step from Python (fast on XLA:CPU, where convolution
  gradients inside a rolled loop take a slow path); ``scan`` runs a whole chunk in
  one ``lax.scan`` (fewer dispatches on GPU/TPU). Steps past ``stop`` in the last
  scanned chunk are skipped with ``lax.cond``, so every chunk has one shape. The
  program is compiled once per shape of the state: again only after a task hook
  changed the shapes.
  """

  def __init__(self, step: Callable, strategy: str, chunk_size: int):
    if strategy == "auto":
      strategy = "loop" if jax.default_backend() == "cpu" else "scan"
    self.strategy = strategy
    self.chunk_size = chunk_size
    self.compile_seconds = 0.0
    self.compiles = 0
    self._step = step
    self._compiled = {}
    if strategy == "loop":
      self._jitted = jax.jit(step, donate_argnums=0)
    else:
      self._jitted = jax.jit(self._scan_chunk, donate_argnums=0)

  def _scan_chunk(self, state, data, start, stop):
    zero_metrics = jax.tree.map(jnp.zeros_like, jax.eval_shape(self._step, state, data, start)[1])

    def body(state, i):
      position = start + i
      return jax.lax.cond(
        position < stop, lambda s: self._step(s, data, position), lambda s: (s, zero_metrics), state
      )

    return jax.lax.scan(body, state, jnp.arange(self.chunk_size))

  def _program(self, *args):
    signature = _shapes(args)
    if signature not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[signature] = self._jitted.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - t0
      self.compiles += 1
    return self._compiled[signature]

  def run(self, state, data, start: int, stop: int):
    """Returns the new state and the metrics of the steps run, [steps] per key (host)."""
    if self.strategy == "loop":
      history = []
      for position in range(start, stop):
        args = (state, data, np.int32(position))
        state, metrics = self._program(*args)(*args)
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: np.stack(xs), *parallel.to_host(history))
    args = (state, data, np.int32(start), np.int32(stop))
    state, metrics = self._program(*args)(*args)
    return state, jax.tree.map(lambda x: x[: stop - start], parallel.to_host(metrics))
