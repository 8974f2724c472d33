"""Device-resident reservoir replay buffer, usable inside ``jit``.

This module owns the buffer's state (``BufferState``), reservoir insertion of a
batch and uniform sampling of a replay minibatch. Everything is a pure function
of arrays with static shapes, so a train step that inserts and samples compiles
once and never recompiles as the reservoir counter grows.

Insertion follows the authors' reservoir exactly (``only_valid=False``): every
real sample advances the counter ``n`` and draws a target, but only correctly
classified samples are written. So during the fill phase a misclassified sample
leaves its slot all-zero (black image, label 0) and that slot is replayed like
any other. ``only_valid=True`` runs the reservoir over correct samples only, so
every slot below ``min(n, M)`` holds a real sample.

A batch is inserted exactly as if its samples were inserted one at a time in
batch order; ``reservoir_draws`` and ``insert`` are split so that tests can feed
the same draws to a plain Python reservoir.
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class BufferState:
  """The buffer's arrays; capacity ``M`` is the static ``images.shape[0]``.

  Attributes:
    images: uint8 [M, H, W, C] raw images.
    labels: int32 [M].
    logits: float32 [M, K] logits recorded when the sample was written.
    attention: float32 [M, D] agent attention vectors (D may be 0).
    num_seen: int32 [] the reservoir counter ``n``.
  """

  images: jax.Array
  labels: jax.Array
  logits: jax.Array
  attention: jax.Array
  num_seen: jax.Array

  @property
  def capacity(self) -> int:
    return self.images.shape[0]


@flax.struct.dataclass
class Replay:
  """A replay minibatch; every field has leading dimension ``size``.

  Attributes:
    images: uint8 [size, H, W, C].
    labels: int32 [size].
    logits: float32 [size, K].
    attention: float32 [size, D].
  """

  images: jax.Array
  labels: jax.Array
  logits: jax.Array
  attention: jax.Array


def init(
  capacity: int,
  image_shape: tuple[int, int, int],
  num_classes: int,
  attention_dim: int,
) -> BufferState:
  """An empty buffer: all arrays zero, ``num_seen`` 0.

  Args:
    capacity: number of slots M; 0 means no replay.
    image_shape: (H, W, C).
    num_classes: K, the width of the stored logits.
    attention_dim: D, the width of the stored attention (0 if unused).

  Returns:
    The zero ``BufferState``.

  Raises:
    ValueError: if ``capacity`` is negative.
  """
  if capacity < 0:
    raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
  return BufferState(
    images=jnp.zeros((capacity, *image_shape), jnp.uint8),
    labels=jnp.zeros((capacity,), jnp.int32),
    logits=jnp.zeros((capacity, num_classes), jnp.float32),
    attention=jnp.zeros((capacity, attention_dim), jnp.float32),
    num_seen=jnp.zeros((), jnp.int32),
  )


def _counted(valid: jax.Array, correct: jax.Array, only_valid: bool):
  """[B] bool: the samples that advance the reservoir counter."""
  return valid & correct if only_valid else valid


def _seen_before(state: BufferState, counted: jax.Array) -> jax.Array:
  """[B] int32: ``n`` as each sample of the batch meets the reservoir."""
  counted = counted.astype(jnp.int32)
  return state.num_seen + jnp.cumsum(counted) - counted


def reservoir_draws(
  key: jax.Array,
  state: BufferState,
  valid: jax.Array,
  correct: jax.Array,
  *,
  only_valid: bool,
) -> jax.Array:
  """Draws ``r_b ~ U{0, ..., n_b}`` (inclusive) for each sample of a batch.

  ``n_b`` is the counter as sample ``b`` meets the reservoir. A draw is only
  used by ``insert`` when ``n_b >= M``; drawing for every sample keeps shapes
  static.

  Args:
    key: PRNG key.
    state: the buffer before the batch.
    valid: bool [B], False for padding.
    correct: bool [B], argmax(logits) == label.
    only_valid: count only correct samples (see module docstring).

  Returns:
    int32 [B] draws.
  """
  n = _seen_before(state, _counted(valid, correct, only_valid))
  return jax.random.randint(key, n.shape, 0, n + 1, dtype=jnp.int32)


def insert(
  state: BufferState,
  draws: jax.Array,
  images: jax.Array,
  labels: jax.Array,
  logits: jax.Array,
  attention: jax.Array,
  valid: jax.Array,
  correct: jax.Array,
  *,
  only_valid: bool,
) -> BufferState:
  """Reservoir-inserts a batch, equal to inserting its samples one by one.

  Args:
    state: the buffer before the batch.
    draws: int32 [B] from ``reservoir_draws`` for this state and batch.
    images: uint8 [B, H, W, C].
    labels: int32 [B].
    logits: float32 [B, K].
    attention: float32 [B, D].
    valid: bool [B], False for padding (never counts, draws or writes).
    correct: bool [B], argmax(logits) == label; only correct samples write.
    only_valid: count only correct samples (see module docstring).

  Returns:
    The buffer after the batch.
  """
  capacity = state.capacity
  counted = _counted(valid, correct, only_valid)
  n = _seen_before(state, counted)
  # Fill phase writes slot n; afterwards slot r is replaced only if r < M.
  target = jnp.where(n < capacity, n, draws)
  writes = counted & correct & (target < capacity)

  # Inserting one by one, the last writer to a slot wins. XLA leaves the order
  # of duplicate scatter indices unspecified, so drop every writer that a later
  # writer of the same batch overwrites. B is small, so [B, B] is cheap.
  order = jnp.arange(target.shape[0])
  overwritten_later = jnp.any(
    (target[:, None] == target[None, :]) & (order[None, :] > order[:, None]) & writes[None, :],
    axis=1,
  )
  # Index M is out of bounds and mode="drop" discards it.
  slot = jnp.where(writes & ~overwritten_later, target, capacity)

  def put(stored, new):
    return stored.at[slot].set(new.astype(stored.dtype), mode="drop")

  return state.replace(
    images=put(state.images, images),
    labels=put(state.labels, labels),
    logits=put(state.logits, logits),
    attention=put(state.attention, attention),
    num_seen=state.num_seen + jnp.sum(counted, dtype=jnp.int32),
  )


def sample(
  state: BufferState, key: jax.Array, size: int, *, only_valid: bool
) -> tuple[Replay, jax.Array]:
  """Draws ``size`` slots uniformly without replacement from the filled ones.

  The filled slots are ``0 .. min(n, M) - 1`` in both modes (``n`` counts
  differently, so ``only_valid`` does not change this function; it is taken
  so that callers pass the same flags to every buffer function). When fewer
  than ``size`` slots are filled the extra rows are zero and masked out.

  Args:
    state: the buffer.
    key: PRNG key.
    size: static number of rows to return.
    only_valid: unused, see above.

  Returns:
    replay: ``Replay`` whose fields have leading dimension ``size``; rows in
      random order.
    mask: bool [size], True for real rows (the first ``min(size, filled)``).
  """
  del only_valid
  capacity = state.capacity
  if capacity == 0:
    # Nothing to gather from (jnp.take rejects an empty axis).
    zeros = jax.tree.map(
      lambda x: jnp.zeros((size, *x.shape[1:]), x.dtype),
      (state.images, state.labels, state.logits, state.attention),
    )
    return Replay(*zeros), jnp.zeros((size,), bool)

  filled = jnp.minimum(state.num_seen, capacity)
  slots = jnp.arange(capacity)
  # Top-k of i.i.d. uniform scores is a uniform random ordered subset; the
  # unfilled slots score -1 so they come after every filled one.
  scores = jnp.where(slots < filled, jax.random.uniform(key, (capacity,)), -1.0)
  _, index = jax.lax.top_k(scores, min(size, capacity))
  index = jnp.pad(index, (0, size - index.shape[0]))
  mask = jnp.arange(size) < jnp.minimum(size, filled)
  # Padding rows point out of bounds, so mode="fill" makes them zero.
  index = jnp.where(mask, index, capacity)

  def take(stored):
    return jnp.take(stored, index, axis=0, mode="fill", fill_value=0)

  replay = Replay(
    images=take(state.images),
    labels=take(state.labels),
    logits=take(state.logits),
    attention=take(state.attention),
  )
  return replay, mask


@dataclasses.dataclass(frozen=True)
class Reservoir:
  """The buffer as a component of a method: its size, fill rule and replay draws.

  Attributes:
    capacity: M slots.
    minibatch: rows of each replay minibatch (B_M).
    draws: independent replay minibatches per step (DER++: 2).
    insert_if_correct: write only correctly classified samples (the
      reference's add-if-correct rule); False: a plain reservoir.
    only_valid: count and sample only written slots (module docstring).
  """

  capacity: int
  minibatch: int
  draws: int = 1
  insert_if_correct: bool = True
  only_valid: bool = False

  def init(
    self, image_shape: tuple[int, int, int], num_classes: int, attention_dim: int
  ) -> BufferState:
    return init(self.capacity, image_shape, num_classes, attention_dim)

  def sample(self, state: BufferState, key: jax.Array) -> tuple[tuple[Replay, jax.Array], ...]:
    """``draws`` pairs (replay minibatch, bool [B_M] mask of its real rows)."""
    # A single draw takes the key as it is; several split it.
    keys = [key] if self.draws == 1 else list(jax.random.split(key, self.draws))
    return tuple(sample(state, k, self.minibatch, only_valid=self.only_valid) for k in keys)

  def insert(
    self,
    state: BufferState,
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    logits: jax.Array,
    attention: jax.Array,
    mask: jax.Array,
  ) -> BufferState:
    """Reservoir-inserts the real rows ``mask`` [B] of a batch with their logits [B, K]
    and attention [B, D] (recorded before the step's update)."""
    correct = (jnp.argmax(logits, -1) == labels) & mask if self.insert_if_correct else mask
    draws = reservoir_draws(key, state, mask, correct, only_valid=self.only_valid)
    return insert(
      state, draws, images, labels, logits, attention, mask, correct, only_valid=self.only_valid
    )
