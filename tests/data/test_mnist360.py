"""MNIST-360 stream (docs/dynamos.md#the-mnist-360-stream): schedule, draws, rotation angles,
PIL-equal rotation."""

import jax
import numpy as np
from PIL import Image
import pytest

from dynamos_jax.data import mnist360

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("mnist360")

# Full MNIST class counts of digits 0-9 (9 is left out by MNIST-360).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def synthetic_labels(counts, seed=0):
  """Labels with the given class counts, classes interleaved in random order."""
  rng = np.random.default_rng(seed)
  return rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)


@pytest.fixture(scope="module")
def train_labels():
  return synthetic_labels(TRAIN_COUNTS)


@pytest.fixture(scope="module")
def full_stream(train_labels):
  return mnist360.train_stream(jax.random.key(0), train_labels, 16)


def mammoth_schedule(labels, batch_size, num_classes=9, rounds=3):
  """Mammoth's MNIST360 training state machine, images left out.

  Returns one ((class0, chunk0, b0), (class1, chunk1, b1)) per batch, chunk =
  the indices the items are drawn from.
  """
  chunks, remaining = [], []
  for j in range(num_classes):
    idx = np.flatnonzero(labels == j)
    per = len(idx) // (rounds * 2) + 1
    chunks.append([idx[k * per : (k + 1) * per] for k in range(rounds * 2)])
    remaining.append([len(c) for c in chunks[-1]])
  classes, completed = [0, 1], 0
  active = [chunks[0].pop(), chunks[1].pop()]
  left = [remaining[0].pop(), remaining[1].pop()]
  batches = []
  while True:
    b0 = min(int(round(left[0] / (left[0] + left[1]) * batch_size)), left[0])
    b1 = min(batch_size - b0, left[1])
    batches.append(((classes[0], active[0], b0), (classes[1], active[1], b1)))
    left[0] -= b0
    left[1] -= b1
    if left[0] <= 0 or left[1] <= 0:
      classes = [(c + 1) % num_classes for c in classes]
      if classes[0] == 0:
        completed += 1
        if completed == rounds:
          return batches
      active = [chunks[classes[0]].pop(), chunks[classes[1]].pop()]
      left = [remaining[classes[0]].pop(), remaining[classes[1]].pop()]


def test_full_mnist_stream_has_27_segments_and_3387_batches(full_stream, train_labels):
  s = full_stream
  assert s.num_batches == 3387
  assert s.index.shape == s.degrees.shape == s.mask.shape == (3387, 16)
  assert s.index.dtype == np.int32 and s.degrees.dtype == np.float32 and s.mask.dtype == bool
  np.testing.assert_array_equal(np.unique(s.segment), np.arange(27))
  assert np.all(np.diff(s.segment) >= 0)
  fill = s.mask.sum(1)
  np.testing.assert_array_equal(s.mask, np.arange(16) < fill[:, None])  # real items first
  assert fill.min() == 3 and fill.max() == 16
  # At B = 16 nothing is discarded: every class contributes exactly N_j draws.
  drawn = train_labels[s.index[s.mask]]
  np.testing.assert_array_equal(np.bincount(drawn, minlength=10), TRAIN_COUNTS[:9] + [0])
  assert s.mask.sum() == 54051
  # Each segment trains on its pair only.
  pairs = mnist360.segment_pairs()
  assert pairs[:2] == [(0, 1), (1, 2)] and pairs[8] == (8, 0) and len(pairs) == 27
  for seg in (0, 8, 13, 26):
    rows = s.segment == seg
    assert set(train_labels[s.index[rows][s.mask[rows]]]) == set(pairs[seg])


def test_first_batches_by_hand(full_stream, train_labels):
  # Class 0: chunks of 5923 // 6 + 1 = 988, the last one 5923 - 5 * 988 = 983.
  # Class 1: chunks of 1124, the last one 6742 - 5 * 1124 = 1122.
  # Batch 1: round(983 / 2105 * 16) = round(7.47) = 7 of class 0, 9 of class 1.
  # Batch 2: round(976 / 2089 * 16) = round(7.48) = 7, and 9.
  labels = train_labels[full_stream.index[:2]]
  np.testing.assert_array_equal(labels[0], [0] * 7 + [1] * 9)
  np.testing.assert_array_equal(labels[1], [0] * 7 + [1] * 9)
  assert mnist360.split_segment(983, 1122, 16)[:2] == [(7, 9), (7, 9)]


def test_split_rounds_half_to_even_and_drops_leftovers():
  assert mnist360.split_segment(3, 3, 5) == [(2, 3)]  # 2.5 -> 2 (half-up would give 3)
  assert mnist360.split_segment(5, 3, 4) == [(2, 2), (3, 1)]  # 2.5 -> 2, then 3
  assert mnist360.split_segment(10, 1, 4) == [(4, 0), (3, 1)]  # 3 items of class 0 dropped
  assert mnist360.split_segment(0, 5, 4) == [(0, 4)]  # an empty chunk ends the segment
  assert mnist360.split_segment(0, 0, 4) == []


@pytest.mark.parametrize(
  "counts,batch_size",
  [
    (TRAIN_COUNTS, 16),
    ([47, 61, 40, 83, 52, 71, 44, 90, 58, 9], 7),  # Uneven: leftovers dropped, small batches.
  ],
)
def test_batches_follow_mammoth_and_draw_within_the_active_chunk(counts, batch_size):
  labels = synthetic_labels(counts, seed=1)
  s = mnist360.train_stream(jax.random.key(3), labels, batch_size)
  expected = mammoth_schedule(labels, batch_size)
  assert s.num_batches == len(expected)
  for row, ((c0, chunk0, b0), (c1, chunk1, b1)) in enumerate(expected):
    assert s.mask[row].sum() == b0 + b1
    first, second = s.index[row, :b0], s.index[row, b0 : b0 + b1]
    assert np.all(labels[first] == c0) and np.all(labels[second] == c1)
    assert np.isin(first, chunk0).all() and np.isin(second, chunk1).all()


def test_draws_are_with_replacement_and_cover_the_chunk(full_stream, train_labels):
  # Segment 0 draws 983 items from class 0's last chunk (983 images) with
  # replacement: about 1 - 1/e = 63% distinct, not 100%.
  rows = full_stream.segment == 0
  idx = full_stream.index[rows][full_stream.mask[rows]]
  class0 = idx[train_labels[idx] == 0]
  chunk = np.flatnonzero(train_labels == 0)[5 * 988 :]
  assert len(class0) == len(chunk) == 983
  distinct = len(np.unique(class0))
  assert 0.55 * 983 < distinct < 0.72 * 983
  # Draws spread over the whole chunk, not its start.
  assert np.isin(class0, chunk[:100]).any() and np.isin(class0, chunk[-100:]).any()


def test_train_angles_sweep_one_turn_per_class(full_stream, train_labels):
  s = full_stream
  drawn_labels = train_labels[s.index[s.mask]]
  drawn_degrees = s.degrees[s.mask]  # stream order
  for j in range(9):
    n_j = TRAIN_COUNTS[j]
    got = drawn_degrees[drawn_labels == j]
    assert len(got) == n_j
    assert got[0] == ((j - 1) * 60) % 360
    # The reference's IncrementalRotation, item by item.
    step = 360.0 / n_j
    want = np.asarray([(n * step + (j - 1) * 60) % 360 for n in range(n_j)], np.float32)
    np.testing.assert_array_equal(got, want)
    turn = np.mod(np.diff(got.astype(np.float64)), 360.0)
    np.testing.assert_allclose(turn, step, atol=1e-3)
    assert abs(turn.sum() + step - 360.0) < 0.05  # one full turn


def test_test_draws_sweep_each_class_once_around():
  labels = synthetic_labels(TEST_COUNTS, seed=2)
  index, degrees = mnist360.test_draws(jax.random.key(0), labels, 16)
  assert index.shape == degrees.shape == (8991,)
  assert index.dtype == np.int32 and degrees.dtype == np.float32
  start = 0
  for j in range(9):
    n_j = TEST_COUNTS[j]
    block, angles = index[start : start + n_j], degrees[start : start + n_j]
    start += n_j
    assert np.all(labels[block] == j)  # class by class, in order
    assert angles[0] == 0.0
    np.testing.assert_allclose(angles, np.arange(n_j) * (360.0 / n_j), rtol=1e-6)
    # Batches of 16 (last truncated): no repeats within a batch, repeats across.
    for b in range(0, n_j, 16):
      assert len(np.unique(block[b : b + 16])) == len(block[b : b + 16])
    assert len(np.unique(block)) < 0.8 * n_j
  assert start == 8991


def test_test_draws_without_shuffle_use_each_item_once_in_order():
  labels = synthetic_labels(TEST_COUNTS, seed=2)
  index, degrees = mnist360.test_draws(jax.random.key(0), labels, 16, shuffle=False)
  want = np.concatenate([np.flatnonzero(labels == j) for j in range(9)])
  np.testing.assert_array_equal(index, want)
  assert degrees[TEST_COUNTS[0]] == 0.0 and degrees[TEST_COUNTS[0] - 1] == np.float32(
    979 * 360.0 / 980
  )


def test_same_key_same_stream_other_key_other_order():
  labels = synthetic_labels([60, 70, 65, 80, 55, 75, 62, 68, 71, 10], seed=4)
  a = mnist360.train_stream(jax.random.key(1), labels, 16)
  b = mnist360.train_stream(jax.random.key(1), labels, 16)
  c = mnist360.train_stream(jax.random.key(2), labels, 16)
  np.testing.assert_array_equal(a.index, b.index)
  assert not np.array_equal(a.index, c.index)
  # Only the draws depend on the key: schedule and angles do not.
  np.testing.assert_array_equal(a.mask, c.mask)
  np.testing.assert_array_equal(a.segment, c.segment)
  np.testing.assert_array_equal(a.degrees, c.degrees)
  test_labels = synthetic_labels([30, 31, 20, 25, 26, 27, 28, 29, 33, 5], seed=5)
  ta = mnist360.test_draws(jax.random.key(1), test_labels, 8)[0]
  tb = mnist360.test_draws(jax.random.key(1), test_labels, 8)[0]
  tc = mnist360.test_draws(jax.random.key(2), test_labels, 8)[0]
  np.testing.assert_array_equal(ta, tb)
  assert not np.array_equal(ta, tc)


def test_too_few_images_of_a_class_is_an_error():
  counts = [20] * 10
  counts[4] = 5
  with pytest.raises(ValueError, match="class 4 has 5"):
    mnist360.train_stream(jax.random.key(0), synthetic_labels(counts), 16)
  counts[4] = 6  # Enough: one image per chunk.
  s = mnist360.train_stream(jax.random.key(0), synthetic_labels(counts), 16)
  assert s.num_batches > 0
  with pytest.raises(ValueError, match="no images of class 3"):
    mnist360.test_draws(jax.random.key(0), np.asarray([0, 1, 2, 4, 5, 6, 7, 8]), 16)


def test_gcl_accuracy_is_sample_weighted():
  # Class 0: 3 of 3 right; class 1: 0 of 1. Sample-weighted 75%, class mean 50%.
  assert mnist360.gcl_accuracy(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1])) == 75.0


def test_pad_batches():
  index, degrees, mask = mnist360.pad_batches(
    np.arange(5, dtype=np.int32), np.ones(5, np.float32), batch_size=2
  )
  assert index.shape == degrees.shape == mask.shape == (3, 2)
  np.testing.assert_array_equal(index, [[0, 1], [2, 3], [4, 0]])
  np.testing.assert_array_equal(mask, [[True, True], [True, True], [True, False]])


def pil_rotate(images, degrees):
  mode = "L" if images.shape[-1] == 1 else "RGB"
  out = []
  for image, angle in zip(images, degrees):
    pil = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
    out.append(np.asarray(pil.rotate(float(angle), resample=Image.NEAREST)))
  out = np.stack(out)
  return out[..., None] if mode == "L" else out


LISTED_ANGLES = np.array([0, 37.5, 90, 180, 270, 300, -60, 45, 12.25, 359.5], np.float32)


@pytest.mark.parametrize("shape", [(28, 28, 1), (27, 27, 3), (20, 31, 1)])
def test_rotate_equals_pil(shape):
  rng = np.random.default_rng(sum(shape))
  random_angles = rng.uniform(-400, 400, 200).astype(np.float32)
  angles = np.concatenate([LISTED_ANGLES, random_angles])
  images = rng.integers(1, 256, (len(angles),) + shape, dtype=np.uint8)  # no black: fill shows
  want = pil_rotate(images, angles)
  # Host fixed-point params: bit-exact on every angle.
  params = mnist360.rotation_params(angles, shape[0], shape[1])
  exact = np.asarray(jax.jit(mnist360.rotate_with_params)(images, params))
  np.testing.assert_array_equal(exact, want)
  assert exact.dtype == np.uint8


def test_rotate_is_counter_clockwise_about_the_centre():
  image = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28, 1)
  rotate = lambda x, d: mnist360.rotate_with_params(x, mnist360.rotation_params(d, 28, 28))
  np.testing.assert_array_equal(rotate(image, np.float32([90])), np.rot90(image, 1, axes=(1, 2)))
  np.testing.assert_array_equal(rotate(image, np.float32([-90])), np.rot90(image, -1, axes=(1, 2)))
  turned = np.asarray(rotate(image, np.float32([45])))
  assert turned[0, 0, 0, 0] == 0 and turned[0, 14, 14, 0] != 0  # corners black, centre kept


def test_repeats_lengthen_the_stream_with_one_turn_per_class():
  counts = [47, 61, 40, 83, 52, 71, 44, 90, 58, 9]
  labels = synthetic_labels(counts, seed=2)
  once = mnist360.train_stream(jax.random.key(5), labels, 7)
  thrice = mnist360.train_stream(jax.random.key(5), labels, 7, repeats=3)
  assert thrice.num_batches > 2.5 * once.num_batches
  pairs = mnist360.segment_pairs(9, 3)
  drawn = labels[thrice.index]
  for row in range(thrice.num_batches):  # every draw from its segment's pair
    assert set(drawn[row][thrice.mask[row]]) <= set(pairs[thrice.segment[row]])
  # Class j's n-th draw turns by 360 / (3 N_j): still one turn over the longer stream.
  for j in range(9):
    got = thrice.degrees[thrice.mask][drawn[thrice.mask] == j]
    want = np.asarray(
      [(n * 360.0 / (3 * counts[j]) + (j - 1) * 60) % 360 for n in range(len(got))], np.float32
    )
    np.testing.assert_allclose(got, want, atol=1e-3)
  with pytest.raises(ValueError, match="repeats"):
    mnist360.train_stream(jax.random.key(5), labels, 7, repeats=0)
