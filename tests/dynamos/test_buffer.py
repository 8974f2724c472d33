"""Tests for dynamos_jax.methods.dynamos.buffer: exactness against a Python reservoir, the
reservoir's statistics, sampling, the reference zero-slot quirk, tracing and
capacity edge cases."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dynamos_jax.methods.dynamos import buffer

IMAGE_SHAPE = (2, 2, 1)
NUM_CLASSES = 4


def reference_insert(ref, draws, batch, only_valid):
  """The authors' reservoir, one sample at a time, on numpy arrays in place.

  Args:
    ref: dict of numpy arrays (images, labels, logits, attention) and int n.
    draws: [B] the same draws fed to ``buffer.insert``.
    batch: dict with images, labels, logits, attention, valid, correct.
    only_valid: count only correct samples.
  """
  capacity = ref["labels"].shape[0]
  for b in range(len(draws)):
    if not batch["valid"][b]:
      continue
    if only_valid and not batch["correct"][b]:
      continue
    n = ref["n"]
    assert 0 <= draws[b] <= n  # The draw range is {0, ..., n} inclusive.
    if n < capacity:
      target = n
    else:
      target = draws[b] if draws[b] < capacity else None
    ref["n"] = n + 1
    if target is not None and batch["correct"][b]:
      for name in ("images", "labels", "logits", "attention"):
        ref[name][target] = batch[name][b]


def random_batch(rng, batch_size, attention_dim):
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  valid = rng.random(batch_size) < 0.8
  # Padding only at the end, as for a last partial batch, half the time.
  if rng.random() < 0.5:
    valid[rng.integers(1, batch_size + 1) :] = False
  return dict(
    images=rng.integers(1, 256, (batch_size, *IMAGE_SHAPE)).astype(np.uint8),
    labels=labels,
    logits=rng.normal(size=(batch_size, NUM_CLASSES)).astype(np.float32),
    attention=rng.normal(size=(batch_size, attention_dim)).astype(np.float32),
    valid=valid,
    correct=rng.random(batch_size) < 0.7,
  )


def jitted_insert(only_valid):
  return jax.jit(functools.partial(buffer.insert, only_valid=only_valid))


def assert_state_equals_reference(state, ref):
  assert int(state.num_seen) == ref["n"]
  for name in ("images", "labels", "logits", "attention"):
    np.testing.assert_array_equal(np.asarray(getattr(state, name)), ref[name])


@pytest.mark.parametrize("only_valid", [False, True])
@pytest.mark.parametrize("attention_dim", [0, 3])
def test_insert_matches_python_reservoir(only_valid, attention_dim):
  capacity, batch_size = 7, 5
  rng = np.random.default_rng(0)
  state = buffer.init(capacity, IMAGE_SHAPE, NUM_CLASSES, attention_dim)
  ref = {
    name: np.array(getattr(state, name)) for name in ("images", "labels", "logits", "attention")
  }
  ref["n"] = 0
  draw = jax.jit(functools.partial(buffer.reservoir_draws, only_valid=only_valid))
  insert = jitted_insert(only_valid)
  key = jax.random.key(0)
  # 60 batches of 5 cover the fill phase, the crossing of M inside a batch and
  # a long replacement phase where same-batch collisions are common.
  for step in range(60):
    batch = random_batch(rng, batch_size, attention_dim)
    draws = draw(jax.random.fold_in(key, step), state, batch["valid"], batch["correct"])
    state = insert(
      state,
      draws,
      batch["images"],
      batch["labels"],
      batch["logits"],
      batch["attention"],
      batch["valid"],
      batch["correct"],
    )
    reference_insert(ref, np.asarray(draws), batch, only_valid)
    assert_state_equals_reference(state, ref)
  assert ref["n"] > 4 * capacity


@pytest.mark.parametrize("only_valid", [False, True])
def test_later_sample_wins_contested_slot(only_valid):
  capacity = 3
  state = buffer.init(capacity, IMAGE_SHAPE, NUM_CLASSES, 2)
  state = state.replace(num_seen=jnp.int32(10))
  # Samples 0, 2 and 3 all draw slot 1; sample 3 is the last correct one.
  # Sample 4 also draws 1 but is misclassified, sample 5 is padding.
  draws = jnp.array([1, 0, 1, 1, 1, 1], jnp.int32)
  labels = jnp.array([1, 2, 3, 3, 3, 3], jnp.int32)
  valid = jnp.array([True, True, True, True, True, False])
  correct = jnp.array([True, True, True, True, False, True])
  batch_size = labels.shape[0]
  images = jnp.broadcast_to(
    jnp.arange(1, batch_size + 1, dtype=jnp.uint8)[:, None, None, None], (batch_size, *IMAGE_SHAPE)
  )
  logits = jnp.broadcast_to(
    jnp.arange(batch_size, dtype=jnp.float32)[:, None], (batch_size, NUM_CLASSES)
  )
  attention = jnp.broadcast_to(jnp.arange(batch_size, dtype=jnp.float32)[:, None], (batch_size, 2))
  new = jitted_insert(only_valid)(state, draws, images, labels, logits, attention, valid, correct)
  np.testing.assert_array_equal(new.labels, [2, 3, 0])
  np.testing.assert_array_equal(new.images[:, 0, 0, 0], [2, 4, 0])
  np.testing.assert_array_equal(new.logits[:, 0], [1, 3, 0])
  np.testing.assert_array_equal(new.attention[:, 0], [1, 3, 0])
  assert int(new.num_seen) == 10 + (4 if only_valid else 5)


def test_draws_cover_inclusive_range():
  # n_b = 5, 6, 7 for the three counted samples; the padded one draws too but
  # its n_b stays 8 and its draw is never used.
  state = buffer.init(3, IMAGE_SHAPE, NUM_CLASSES, 0)
  state = state.replace(num_seen=jnp.int32(5))
  valid = jnp.array([True, True, False, True])
  correct = jnp.ones(4, bool)
  keys = jax.random.split(jax.random.key(1), 2000)
  draws = jax.vmap(lambda k: buffer.reservoir_draws(k, state, valid, correct, only_valid=False))(
    keys
  )
  for b, n in enumerate([5, 6, 8, 7]):
    if not valid[b]:
      continue
    values = set(np.asarray(draws[:, b]).tolist())
    assert values == set(range(n + 1)), (b, values)


def test_retention_probability_is_capacity_over_seen():
  """Each of n=200 samples is kept with probability M/n = 0.1.

  Tolerance: over R=4000 independent reservoirs each sample's keep count is
  Binomial(R, 0.1) (mean 400, sigma 19); every count must be within 5 sigma.
  The per-sample z-scores must also pass a chi-square test with n-1 degrees of
  freedom (the counts sum to exactly R*M) at p >= 1e-6. The seed is fixed, so
  the test is deterministic.
  """
  capacity, num_samples, batch_size, reps = 20, 200, 10, 4000
  num_batches = num_samples // batch_size
  ones = jnp.ones(batch_size, bool)
  ids = jnp.arange(num_samples, dtype=jnp.int32).reshape(num_batches, batch_size)

  def run(key):
    state = buffer.init(capacity, (1, 1, 1), 1, 0)

    def step(state, xs):
      batch_key, labels = xs
      draws = buffer.reservoir_draws(batch_key, state, ones, ones, only_valid=False)
      state = buffer.insert(
        state,
        draws,
        jnp.zeros((batch_size, 1, 1, 1), jnp.uint8),
        labels,
        jnp.zeros((batch_size, 1)),
        jnp.zeros((batch_size, 0)),
        ones,
        ones,
        only_valid=False,
      )
      return state, None

    state, _ = jax.lax.scan(step, state, (jax.random.split(key, num_batches), ids))
    return jnp.zeros(num_samples, jnp.int32).at[state.labels].add(1)

  kept = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2), reps))
  # A reservoir never keeps a sample twice.
  assert int(kept.max()) == 1
  counts = np.asarray(kept.sum(0))
  assert counts.sum() == reps * capacity
  p = capacity / num_samples
  z = (counts - reps * p) / np.sqrt(reps * p * (1 - p))
  assert np.abs(z).max() < 5, np.abs(z).max()
  assert scipy.stats.chi2.sf(np.sum(z**2), num_samples - 1) > 1e-6


def filled_state(capacity, num_seen):
  """A buffer whose slot i holds label i + 1 (0 marks a zero row)."""
  state = buffer.init(capacity, IMAGE_SHAPE, NUM_CLASSES, 2)
  return state.replace(
    labels=jnp.arange(1, capacity + 1, dtype=jnp.int32),
    images=jnp.ones_like(state.images),
    num_seen=jnp.int32(num_seen),
  )


@pytest.mark.parametrize(
  "capacity,num_seen,size",
  [
    (10, 4, 6),  # fewer filled than size
    (10, 7, 7),  # exactly size filled
    (10, 50, 6),  # full buffer
    (4, 50, 6),  # size larger than the buffer
    (10, 0, 3),  # empty
  ],
)
def test_sample_without_replacement_from_filled_range(capacity, num_seen, size):
  reps = 3000
  state = filled_state(capacity, num_seen)
  filled = min(num_seen, capacity)
  sample = jax.jit(jax.vmap(lambda k: buffer.sample(state, k, size, only_valid=False)))
  replay, mask = sample(jax.random.split(jax.random.key(3), reps))
  assert replay.images.shape == (reps, size, *IMAGE_SHAPE)
  assert replay.logits.shape == (reps, size, NUM_CLASSES)
  assert replay.attention.shape == (reps, size, 2)
  labels, mask = np.asarray(replay.labels), np.asarray(mask)
  real = min(size, filled)
  np.testing.assert_array_equal(mask, np.broadcast_to(np.arange(size) < real, mask.shape))
  # Masked-out rows are zero; real rows are buffer rows from the filled range.
  assert np.all(labels[~mask] == 0)
  assert np.all(np.asarray(replay.images)[~mask] == 0)
  assert np.all((labels[mask] >= 1) & (labels[mask] <= filled))
  # No slot twice in a row: the sorted real labels strictly increase.
  assert np.all(np.diff(np.sort(labels[:, :real], axis=1), axis=1) > 0)
  if filled:
    # Each filled slot is drawn with probability real / filled per call.
    # Tolerance: Binomial(reps, q) count within 5 sigma (or exact if q == 1).
    counts = np.bincount(labels[mask] - 1, minlength=filled)
    q = real / filled
    sigma = np.sqrt(reps * q * (1 - q))
    assert np.all(np.abs(counts - reps * q) <= 5 * sigma + 1e-9), counts


@pytest.mark.parametrize("only_valid", [False, True])
def test_incorrect_sample_in_fill_phase(only_valid):
  state = buffer.init(4, IMAGE_SHAPE, NUM_CLASSES, 1)
  insert = jitted_insert(only_valid)
  ones = jnp.ones((1, *IMAGE_SHAPE), jnp.uint8)
  valid = jnp.array([True])

  def add(state, label, correct):
    return insert(
      state,
      jnp.zeros(1, jnp.int32),
      ones,
      jnp.array([label], jnp.int32),
      jnp.ones((1, NUM_CLASSES)),
      jnp.ones((1, 1)),
      valid,
      jnp.array([correct]),
    )

  state = add(state, 2, True)
  state = add(state, 3, False)
  state = add(state, 1, True)
  if only_valid:
    # The misclassified sample is skipped entirely.
    assert int(state.num_seen) == 2
    np.testing.assert_array_equal(state.labels, [2, 1, 0, 0])
  else:
    # It takes slot 1 without writing it: slot 1 stays zero but is filled.
    assert int(state.num_seen) == 3
    np.testing.assert_array_equal(state.labels, [2, 0, 1, 0])
    np.testing.assert_array_equal(state.images[1], 0)
    np.testing.assert_array_equal(state.logits[1], 0)
  replay, mask = buffer.sample(state, jax.random.key(0), 4, only_valid=only_valid)
  assert int(mask.sum()) == int(state.num_seen)
  if not only_valid:
    # The zero slot is replayed like any other.
    assert 0 in np.asarray(replay.labels[mask]).tolist()


def test_traced_once_across_num_seen():
  capacity, batch_size = 5, 3

  # chex needs real functions (it reads their source location), not partials.
  @jax.jit
  @chex.assert_max_traces(n=1)
  def draw(key, state, valid, correct):
    return buffer.reservoir_draws(key, state, valid, correct, only_valid=False)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def insert(*args):
    return buffer.insert(*args, only_valid=False)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def sample(state, key):
    return buffer.sample(state, key, 4, only_valid=False)

  state = buffer.init(capacity, IMAGE_SHAPE, NUM_CLASSES, 2)
  rng = np.random.default_rng(4)
  key = jax.random.key(4)
  for step in range(6):  # num_seen crosses 0, < M, = M and > M.
    batch = random_batch(rng, batch_size, 2)
    batch["valid"][:] = True
    key, draw_key, sample_key = jax.random.split(key, 3)
    draws = draw(draw_key, state, batch["valid"], batch["correct"])
    state = insert(
      state,
      draws,
      batch["images"],
      batch["labels"],
      batch["logits"],
      batch["attention"],
      batch["valid"],
      batch["correct"],
    )
    sample(state, sample_key)
  assert int(state.num_seen) == 18


def test_capacity_zero():
  state = buffer.init(0, IMAGE_SHAPE, NUM_CLASSES, 3)
  assert state.images.shape == (0, *IMAGE_SHAPE)
  assert state.attention.shape == (0, 3)
  batch = random_batch(np.random.default_rng(5), 4, 3)
  for only_valid in (False, True):
    draws = buffer.reservoir_draws(
      jax.random.key(5), state, batch["valid"], batch["correct"], only_valid=only_valid
    )
    new = jitted_insert(only_valid)(
      state,
      draws,
      batch["images"],
      batch["labels"],
      batch["logits"],
      batch["attention"],
      batch["valid"],
      batch["correct"],
    )
    counted = batch["valid"] & (batch["correct"] | (not only_valid))
    assert int(new.num_seen) == counted.sum()
    assert new.images.shape == state.images.shape
    replay, mask = jax.jit(functools.partial(buffer.sample, size=5, only_valid=only_valid))(
      new, jax.random.key(6)
    )
    assert replay.images.shape == (5, *IMAGE_SHAPE)
    assert replay.images.dtype == jnp.uint8
    assert replay.labels.shape == (5,)
    assert replay.logits.shape == (5, NUM_CLASSES)
    assert replay.attention.shape == (5, 3)
    assert not mask.any()
    assert not replay.logits.any()


def test_negative_capacity_raises():
  with pytest.raises(ValueError, match="capacity"):
    buffer.init(-1, IMAGE_SHAPE, NUM_CLASSES, 0)
