"""MNIST-360: the general-continual-learning stream of rotating digit pairs.

Reproduces the reference (Mammoth) MNIST-360 stream (docs/dynamos.md#the-mnist-360-stream):

* Digits 0-8 only (K = 9). Each class j's training images, in dataset order,
  are cut into 6 consecutive chunks of ``n_j // 6 + 1`` images (the last one
  smaller).
* 3 rounds over the pairs (0, 1), (1, 2), ..., (7, 8), (8, 0): 27 segments.
  Entering a pair takes a fresh chunk of both classes, last chunk first.
* Within a segment every batch of size B takes
  ``b0 = min(round(r0 / (r0 + r1) * B), r0)`` items of the first class and
  ``b1 = min(B - b0, r1)`` of the second (r0, r1: items left in the two
  active chunks; Python rounding, half to even), first-class items first. The
  segment ends when r0 or r1 reaches 0 (the other chunk's rest is dropped), so
  batches near segment ends are smaller (as small as 3 at B = 16): batches are
  padded to B and carry a mask.
* Each item is drawn uniformly at random *with replacement* from its active
  chunk (as many draws as the chunk has images): the reference takes the first
  item of a freshly shuffled pass over the chunk for every draw.
* Rotation: one counter per class, shared by its chunks; the n-th drawn item of
  class j is rotated by ``((j - 1) * 60 + n * 360 / N_j) mod 360`` degrees
  counter-clockwise, N_j = class j's training count.
* Test: class by class, each class with its own counter from 0 degrees in
  steps of ``360 / N_j_test``; see `test_draws`.

The schedule and the draws are made on the host in NumPy from an explicit
`jax.random` key (`train_stream`, `test_draws`); the host turns each angle
into PIL's fixed-point map (`rotation_params`) and the device applies it
(`rotate_with_params`), so the rotation lives inside the jitted train step.

Exactness: angles are computed in float64 like the reference and stored as
float32 (off by at most ~2e-5 degrees); the rotation equals PIL's
nearest-neighbour `Image.rotate` pixel for pixel.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 9
ROUNDS = 3
CHUNKS_PER_CLASS = 6  # Each class is entered twice per round.


@dataclasses.dataclass(frozen=True)
class Stream:
  """The whole MNIST-360 training stream, batches padded to B.

  Attributes:
    index: int32 [S, B] indices into the training set (padding points at 0).
    degrees: float32 [S, B] counter-clockwise rotation of each item (padding
      0). Computed in float64 as the reference does, then rounded to float32.
    mask: bool [S, B], True for real items; each row's real items come first.
    segment: int32 [S] which pair segment (0 .. rounds * K - 1) each batch
      belongs to; segment s trains on the pair `segment_pairs()[s]`.
  """

  index: np.ndarray
  degrees: np.ndarray
  mask: np.ndarray
  segment: np.ndarray

  @property
  def num_batches(self) -> int:
    """S, the number of train steps."""
    return self.index.shape[0]


def segment_pairs(num_classes: int = NUM_CLASSES, rounds: int = ROUNDS) -> list[tuple[int, int]]:
  """The (first, second) class of each segment: (0, 1), (1, 2), ..., (K-1, 0), repeated."""
  return [(c, (c + 1) % num_classes) for _ in range(rounds) for c in range(num_classes)]


def class_chunks(
  labels: np.ndarray, num_classes: int = NUM_CLASSES, chunks_per_class: int = CHUNKS_PER_CLASS
) -> list[list[np.ndarray]]:
  """Cuts each class's training indices into consecutive chunks.

  Args:
    labels: [N] int labels of the whole training set (classes >= K ignored).
    num_classes: K, classes 0 .. K-1 are used.
    chunks_per_class: C.

  Returns:
    ``chunks[j][k]``: int32 indices (dataset order) of chunk k of class j, of
    size ``n_j // C + 1`` except the last one(s), which get what is left
    (possibly nothing when n_j is small).

  Raises:
    ValueError: a class has fewer than C training images.
  """
  labels = np.asarray(labels)
  chunks = []
  for j in range(num_classes):
    indices = np.flatnonzero(labels == j).astype(np.int32)
    if len(indices) < chunks_per_class:
      raise ValueError(
        f"MNIST-360 needs at least {chunks_per_class} training images of every class "
        f"0..{num_classes - 1} (one per chunk); class {j} has {len(indices)}"
      )
    size = len(indices) // chunks_per_class + 1
    chunks.append([indices[k * size : (k + 1) * size] for k in range(chunks_per_class)])
  return chunks


def split_segment(remaining0: int, remaining1: int, batch_size: int) -> list[tuple[int, int]]:
  """The (b0, b1) class counts of each batch of one pair segment.

  Args:
    remaining0: items in the first class's chunk.
    remaining1: items in the second class's chunk.
    batch_size: B.

  Returns:
    One (b0, b1) per batch, following the reference's proportional rule; the
    segment ends as soon as either chunk is used up. Empty when both chunks
    are empty (the reference divides by zero there).
  """
  r0, r1 = remaining0, remaining1
  sizes = []
  if r0 + r1 == 0:
    return sizes
  while True:
    b0 = min(int(round(r0 / (r0 + r1) * batch_size)), r0)
    b1 = min(batch_size - b0, r1)
    sizes.append((b0, b1))
    r0 -= b0
    r1 -= b1
    if r0 <= 0 or r1 <= 0:
      return sizes


def train_stream(
  key: jax.Array,
  labels: np.ndarray,
  batch_size: int,
  num_classes: int = NUM_CLASSES,
  rounds: int = ROUNDS,
  chunks_per_class: int = CHUNKS_PER_CLASS,
  repeats: int = 1,
) -> Stream:
  """The MNIST-360 training stream: schedule, draws and rotation angles.

  Args:
    key: PRNG key; it alone decides which chunk items are drawn.
    labels: [N] int labels of the whole training set (0-9; digits >= K are
      left out).
    batch_size: B.
    num_classes: K.
    rounds: passes over the K pairs.
    chunks_per_class: C; the chunks are used last to first, and each class is
      entered 2 * rounds times, so C >= 2 * rounds (with more, the first
      C - 2 * rounds chunks are never used).
    repeats: r draws per chunk item instead of one (r times the steps, each
      digit still turning once over the stream): not the reference's stream,
      a longer one for small datasets (configs/mnist360_quick.py). 1: the reference.

  Small classes (n_j < 36 or so) leave some chunks empty. As in the
  reference, a segment with one empty chunk is one batch of the other class;
  a segment with both chunks empty has no batch (the reference divides by
  zero there).

  Returns:
    The `Stream` (3,387 batches for full MNIST at B = 16).

  Raises:
    ValueError: bad sizes, or a class with fewer than C training images.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if num_classes < 2:
    raise ValueError(f"MNIST-360 needs at least 2 classes, got {num_classes}")
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  if chunks_per_class < 2 * rounds:
    raise ValueError(
      f"{rounds} rounds enter each class {2 * rounds} times, "
      f"but there are only chunks_per_class={chunks_per_class} chunks"
    )
  chunks = class_chunks(labels, num_classes, chunks_per_class)
  counts = np.bincount(np.asarray(labels)[np.asarray(labels) < num_classes], minlength=num_classes)

  # Schedule: for every draw, its chunk; for every batch, its size and segment.
  unused = [list(range(chunks_per_class)) for _ in range(num_classes)]
  chunk_class, chunk_id, batch_fill, batch_segment = [], [], [], []
  for s, (c0, c1) in enumerate(segment_pairs(num_classes, rounds)):
    k0, k1 = unused[c0].pop(), unused[c1].pop()
    for b0, b1 in split_segment(
      repeats * len(chunks[c0][k0]), repeats * len(chunks[c1][k1]), batch_size
    ):
      chunk_class += [c0] * b0 + [c1] * b1
      chunk_id += [k0] * b0 + [k1] * b1
      batch_fill.append(b0 + b1)
      batch_segment.append(s)
  draw_class = np.asarray(chunk_class, np.int32)
  draw_chunk = np.asarray(chunk_id, np.int32)

  # Draws: uniform with replacement within the active chunk.
  size = np.asarray([len(chunks[j][0]) for j in range(num_classes)])
  chunk_len = np.asarray([[len(c) for c in chunks[j]] for j in range(num_classes)])
  lengths = chunk_len[draw_class, draw_chunk]
  offsets = np.asarray(jax.random.randint(key, (len(draw_class),), 0, lengths))
  class_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
  all_indices = np.concatenate([np.concatenate(chunks[j]) for j in range(num_classes)])
  flat_index = all_indices[class_start[draw_class] + draw_chunk * size[draw_class] + offsets]

  # Rotation: the n-th draw of class j (over the whole stream).
  draw_number = np.zeros(len(draw_class), np.int64)
  for j in range(num_classes):
    drawn = draw_class == j
    draw_number[drawn] = np.arange(drawn.sum())
  flat_degrees = _incremental_degrees(
    draw_number, repeats * counts[draw_class], (draw_class - 1) * 60
  )

  fill = np.asarray(batch_fill, np.int64)
  mask = np.arange(batch_size)[None, :] < fill[:, None]
  index = np.zeros(mask.shape, np.int32)
  degrees = np.zeros(mask.shape, np.float32)
  index[mask] = flat_index  # Row-major: the draws in stream order.
  degrees[mask] = flat_degrees
  return Stream(
    index=index, degrees=degrees, mask=mask, segment=np.asarray(batch_segment, np.int32)
  )


def test_draws(
  key: jax.Array,
  labels: np.ndarray,
  batch_size: int,
  shuffle: bool = True,
  num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
  """The MNIST-360 test items and their rotations, in evaluation order.

  Evaluation goes class by class (0 .. K-1). Class j, with N_j test images,
  yields exactly N_j items; its n-th item is rotated by ``n * 360 / N_j``
  degrees.

  With ``shuffle=True`` (the reference Dynamos code;
  docs/dynamos.md#the-mnist-360-stream) the items of class j come in batches of
  B, each the first B items of a fresh shuffle of the class's test images (so an
  image may appear in several batches, or in none), the last batch truncated to
  reach N_j. With ``shuffle=False`` (Mammoth's later fix) each test image of
  class j is used exactly once, in dataset order. (Mammoth's current code
  actually re-reads the first B images of the unshuffled class for every batch;
  that variant is not offered.)

  Args:
    key: PRNG key (unused when ``shuffle=False``).
    labels: [N] int labels of the whole test set (digits >= K left out).
    batch_size: B.
    shuffle: see above.
    num_classes: K.

  Returns:
    index: int32 [sum_j N_j] (8,991 for MNIST) indices into the test set.
    degrees: float32 [sum_j N_j] counter-clockwise rotation of each item.

  Raises:
    ValueError: ``batch_size < 1`` or a class without test images.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  labels = np.asarray(labels)
  members = [np.flatnonzero(labels == j).astype(np.int32) for j in range(num_classes)]
  for j, m in enumerate(members):
    if len(m) == 0:
      raise ValueError(f"MNIST-360 test set has no images of class {j}")
  if shuffle:
    # Row r of `bits` ranks the images of one batch's class: the first B of
    # its argsort are the first B of a uniform random permutation (ties, about
    # 1e-4 per batch, go to the earlier image). One call for all batches of
    # all classes: one shape, one compilation.
    batches = [-(-len(m) // batch_size) for m in members]
    bits = np.asarray(jax.random.bits(key, (sum(batches), max(len(m) for m in members))))
    row = np.cumsum([0] + batches)
  index, degrees = [], []
  for j, m in enumerate(members):
    n = len(m)
    if shuffle:
      ranks = bits[row[j] : row[j + 1], :n]
      picks = np.argsort(ranks, axis=1, kind="stable")[:, :batch_size]
      index.append(m[picks.reshape(-1)[:n]])  # Full batches but the last, truncated.
    else:
      index.append(m)
    degrees.append(_incremental_degrees(np.arange(n), np.full(n, n), np.zeros(n)))
  return np.concatenate(index), np.concatenate(degrees)


test_draws.__test__ = False  # Not a test, even when imported into a test module.


def pad_batches(*arrays: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
  """Cuts flat per-item arrays [n, ...] into padded batches [ceil(n / B), B, ...].

  Returns the padded arrays (padding zero) followed by the mask [rows, B].
  """
  n = len(arrays[0])
  rows = -(-n // batch_size)
  out = []
  for a in arrays:
    padded = np.zeros((rows * batch_size,) + a.shape[1:], a.dtype)
    padded[:n] = a
    out.append(padded.reshape((rows, batch_size) + a.shape[1:]))
  mask = (np.arange(rows * batch_size) < n).reshape(rows, batch_size)
  return (*out, mask)


def _incremental_degrees(number: np.ndarray, total: np.ndarray, start: np.ndarray) -> np.ndarray:
  """``(number * (360 / total) + start) % 360`` in float64, as the reference, to float32."""
  step = 360.0 / np.asarray(total, np.float64)
  return ((np.asarray(number, np.float64) * step + start) % 360.0).astype(np.float32)


def gcl_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Sample-weighted accuracy in percent over all test draws (GCL; docs/dynamos.md#evaluation)."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if predictions.shape != labels.shape or predictions.size == 0:
    raise ValueError(f"need equal non-empty shapes, got {predictions.shape} and {labels.shape}")
  return float(100.0 * np.mean(predictions == labels))


# --- Rotation ---------------------------------------------------------------
#
# PIL's `Image.rotate(angle, resample=NEAREST)` (what torchvision's F.rotate
# runs on a PIL image) maps every output pixel centre (x + 0.5, y + 0.5) back
# through the inverse rotation about (W / 2, H / 2) and takes the source pixel
# it falls in, black outside. It does so in 16.16 fixed point:
#   a0 = FIX(cos t), a1 = FIX(-sin t), a3 = FIX(sin t), a4 = FIX(cos t),
#   a2 = FIX(cx - cx cos t + cy sin t + (cos t - sin t) / 2),
#   a5 = FIX(cy - cx sin t - cy cos t + (sin t + cos t) / 2),
#   FIX(v) = floor(v * 65536 + 0.5), t = angle in radians (counter-clockwise),
#   source x = (a2 + a0 x + a1 y) >> 16, source y = (a5 + a3 x + a4 y) >> 16.
# (Its shortcuts for 0, 180 and, on square images, 90 / 270 degrees are
# transposes that this same map reproduces exactly.) The six integers are
# "rotation params" below.


def rotation_params(degrees: np.ndarray, height: int, width: int) -> np.ndarray:
  """PIL's exact fixed-point map for each angle, computed on the host.

  Follows Pillow's `Image.rotate` and `ImagingTransformAffine` operation by
  operation in float64 (Python's `math`), so `rotate_with_params` with these
  params equals PIL pixel for pixel.

  Args:
    degrees: [...] counter-clockwise angles (any float dtype).
    height: H of the images.
    width: W of the images.

  Returns:
    int32 [..., 6] (a0, a1, a2, a3, a4, a5).
  """
  degrees = np.asarray(degrees)
  cx, cy = width / 2, height / 2

  def fix(v: float) -> int:
    return math.floor(v * 65536.0 + 0.5)  # PIL's affine map is 16.16 fixed point.

  def one(angle: float) -> tuple[int, ...]:
    t = -math.radians(angle % 360.0)
    a = [
      round(math.cos(t), 15),
      round(math.sin(t), 15),
      0.0,
      round(-math.sin(t), 15),
      round(math.cos(t), 15),
      0.0,
    ]
    a[2] = a[0] * -cx + a[1] * -cy + a[2] + cx
    a[5] = a[3] * -cx + a[4] * -cy + a[5] + cy
    return (
      fix(a[0]),
      fix(a[1]),
      fix(a[2] + a[0] * 0.5 + a[1] * 0.5),
      fix(a[3]),
      fix(a[4]),
      fix(a[5] + a[3] * 0.5 + a[4] * 0.5),
    )

  cache = {}  # Angles repeat (padding, shared values).
  flat = []
  for d in degrees.reshape(-1).tolist():
    if d not in cache:
      cache[d] = one(d)
    flat.append(cache[d])
  return np.asarray(flat, np.int32).reshape(degrees.shape + (6,))


def rotate_with_params(images: jax.Array, params: jax.Array) -> jax.Array:
  """Applies PIL's nearest-neighbour fixed-point map to a batch, jittable.

  Args:
    images: uint8 (or any dtype) [N, H, W, C].
    params: int32 [N, 6] from `rotation_params`.

  Returns:
    [N, H, W, C], same dtype, zero where the source falls outside the image.
  """
  _, h, w, _ = images.shape
  params = jnp.asarray(params, jnp.int32)
  a = [params[:, k, None, None] for k in range(6)]
  y = jnp.arange(h, dtype=jnp.int32)[None, :, None]
  x = jnp.arange(w, dtype=jnp.int32)[None, None, :]
  src_x = (a[2] + a[0] * x + a[1] * y) >> 16  # Arithmetic shift = floor division.
  src_y = (a[5] + a[3] * x + a[4] * y) >> 16
  inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
  gathered = jax.vmap(lambda im, sy, sx: im[sy, sx])(
    images, jnp.clip(src_y, 0, h - 1), jnp.clip(src_x, 0, w - 1)
  )
  return jnp.where(inside[..., None], gathered, jnp.zeros((), images.dtype))
