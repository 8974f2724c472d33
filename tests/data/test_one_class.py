"""DGM's one-class benchmarks: hold-out, fixed order, joint mode, the resize, evaluation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import benchmarks
from dynamos_jax.benchmarks import one_class
from dynamos_jax.config import base_config, validate
from dynamos_jax.errors import ConfigError

from conftest import tiny_dataset


def _config(batch_size=5, epochs=2):
  c = base_config()
  c.batch_size, c.epochs = batch_size, epochs
  return c


def _data(size, per_class=12):
  host = tiny_dataset(per_class=per_class, size=size)
  return benchmarks.DeviceData(
    host,
    jax.device_put(host.train_images),
    jax.device_put(host.train_labels),
    jax.device_put(host.test_images),
  ), host


def _build(name, size, seed=0, joint=False, **config):
  data, host = _data(size)
  b = benchmarks.REGISTRY[name](_config(**config), data, jax.random.key(seed), joint)
  return b, host


def _pil_bilinear_reference(image: np.ndarray, out: int) -> np.ndarray:
  """PIL's uint8 bilinear resize re-done in NumPy: per axis, a triangle filter at
  centres (x + 0.5) * in / out, weights normalised then quantised to 22 bits,
  horizontal pass first, rounded and clipped to uint8 before the vertical."""
  precision = 22

  def coefficients(n_in):
    scale = n_in / out
    support = 1.0 * max(scale, 1.0)
    rows = []
    for x in range(out):
      centre = (x + 0.5) * scale
      lo = max(int(centre - support + 0.5), 0)
      hi = min(int(centre + support + 0.5), n_in)
      w = np.array(
        [max(0.0, 1.0 - abs((k - centre + 0.5) / max(scale, 1.0))) for k in range(lo, hi)]
      )
      w = w / w.sum()
      q = np.where(w < 0, -0.5 + w * (1 << precision), 0.5 + w * (1 << precision)).astype(np.int64)
      row = np.zeros(n_in, np.int64)
      row[lo:hi] = q
      rows.append(row)
    return np.stack(rows)

  def apply(matrix, values):  # values [n_in, ...] int -> [out, ...] uint8
    acc = np.tensordot(matrix, values.astype(np.int64), axes=(1, 0)) + (1 << (precision - 1))
    return np.clip(acc >> precision, 0, 255)

  h, w = image.shape
  horizontal = apply(coefficients(w), image.T).T  # [h, out]
  return apply(coefficients(h), horizontal).astype(np.uint8)


def test_resize_equals_pil_bilinear():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
  images[0] = 0
  images[1, 10:18, 12:16] = 255  # Sharp edges exercise the rounding.
  resized = one_class.resize_bilinear(images)
  assert resized.shape == (6, 32, 32, 1) and resized.dtype == np.uint8
  for x, y in zip(images, resized):
    np.testing.assert_array_equal(y[..., 0], _pil_bilinear_reference(x[..., 0], 32))
  assert not resized[0].any()


def test_mnist_images_are_resized_grey_32():
  b, host = _build("dgm-mnist", 28)
  assert b.image_shape == (32, 32, 1)
  expected = one_class.resize_bilinear(host.train_images[:, :, :, :1])
  np.testing.assert_array_equal(np.asarray(b.data.train_images), expected)
  np.testing.assert_array_equal(
    np.asarray(b.data.test_images), one_class.resize_bilinear(host.test_images[:, :, :, :1])
  )
  # A later seed gets the prepared data and keeps it as it is.
  again = benchmarks.REGISTRY["dgm-mnist"](_config(), b.data, jax.random.key(1), False)
  assert again.data is b.data


def test_svhn_keeps_32x32_colour_bytes():
  b, host = _build("dgm-svhn", 32)
  assert b.image_shape == (32, 32, 3)
  np.testing.assert_array_equal(np.asarray(b.data.train_images), host.train_images)


@pytest.mark.parametrize(
  "name, valid_per_class", [("dgm-mnist", 1), ("dgm-svhn", 2), ("dgm-cifar10", 2)]
)
def test_holdout_is_per_class_disjoint_and_seeded(name, valid_per_class):
  """12 per class: MNIST holds out int(0.15 * 12) = 1, SVHN/CIFAR keep int(0.9 * 12) = 10."""
  b, host = _build(name, 32 if name != "dgm-mnist" else 28)
  labels = host.train_labels
  for c in range(10):
    train, valid = b.train_parts[c], b.valid_parts[c]
    assert len(valid) == valid_per_class and len(train) == 12 - valid_per_class
    assert set(train).isdisjoint(valid)
    assert sorted(np.concatenate([train, valid])) == list(np.flatnonzero(labels == c))
    assert b.task_data(c).size == len(train)
  images, valid_labels = b.validation_set()
  valid = np.concatenate(b.valid_parts)
  np.testing.assert_array_equal(valid_labels, labels[valid])
  np.testing.assert_array_equal(np.asarray(images), np.asarray(b.data.train_images)[valid])
  same, _ = _build(name, 32 if name != "dgm-mnist" else 28, seed=0)
  other, _ = _build(name, 32 if name != "dgm-mnist" else 28, seed=1)
  assert all(np.array_equal(x, y) for x, y in zip(b.train_parts, same.train_parts))
  assert any(not np.array_equal(x, y) for x, y in zip(b.train_parts, other.train_parts))


def test_fixed_order_identical_across_epochs_labels_are_tasks():
  b, host = _build("dgm-mnist", 28, batch_size=4, epochs=3)
  n = 12 - 1
  assert b.batches == [math.ceil(n / 4)] * 10 and b.seen_after == list(range(1, 11))
  for t in (0, 7):
    epochs = [b.epoch_data(t, e) for e in range(3)]
    for e in epochs[1:]:
      np.testing.assert_array_equal(e.order, epochs[0].order)
      np.testing.assert_array_equal(e.mask, epochs[0].mask)
    hook = b.task_data(t).batches(4)
    train = b.train_parts[t]
    for i in range(b.batches[t]):
      batch, hooked = epochs[2].batch(i), hook.batch(i)
      rows = train[4 * i : 4 * i + 4]
      assert int(batch.mask.sum()) == len(rows)
      np.testing.assert_array_equal(
        np.asarray(batch.images)[: len(rows)], np.asarray(b.data.train_images)[rows]
      )
      np.testing.assert_array_equal(
        np.asarray(hooked.images)[np.asarray(hooked.mask)],
        np.asarray(batch.images)[np.asarray(batch.mask)],
      )
      assert np.all(np.asarray(batch.labels)[np.asarray(batch.mask)] == t)
      assert int(batch.task) == t
    assert not epochs[0].batch(b.batches[t] - 1).mask[-1]  # 11 = 2 x 4 + 3: padded


def test_joint_mode_one_shuffled_task_of_every_class():
  b, host = _build("dgm-svhn", 32, joint=True, batch_size=7)
  assert len(b.batches) == 1 and b.seen_after == [10]
  every = np.sort(np.concatenate(b.train_parts))
  e0, e1 = b.epoch_data(0, 0), b.epoch_data(0, 1)
  for e in (e0, e1):
    assert sorted(np.asarray(e.order)[np.asarray(e.mask)]) == list(every)
  assert not np.array_equal(e0.order, e1.order)
  assert b.task_data(0).size == len(every)


def test_evaluate_per_class_on_the_test_split():
  b, host = _build("dgm-mnist", 28)
  calls = []

  def predict(images, task):  # Always class 3; checks the images it gets.
    calls.append(images.shape)
    assert task is None
    return jnp.zeros((images.shape[0], 10)).at[:, 3].set(1.0)

  scores = b.evaluate(predict, batch_size=16)
  assert scores["class_il"] == [100.0 if c == 3 else 0.0 for c in range(10)]
  assert scores["task_il"] == [100.0] * 10
  assert all(s[1:] == (32, 32, 1) for s in calls) and sum(s[0] for s in calls) >= 40
  # Half right on every class: the first test image of each pair.
  labels = host.test_labels

  def half(images, task):
    del images, task
    return jax.nn.one_hot(np.where(np.arange(40) % 2 == 0, labels, (labels + 1) % 10), 10)

  assert b.evaluate(half, batch_size=40)["class_il"] == [50.0] * 10
  valid = b.evaluate(predict, batch_size=16, split="valid")["class_il"]
  assert valid == [100.0 if c == 3 else 0.0 for c in range(10)]


def test_imagenet50_class_selection_and_refusal():
  classes = one_class.imagenet_class_indices(5)
  assert classes.shape == (5, 10)
  assert list(classes[0]) == [1, 15, 29, 45, 59, 65, 81, 89, 90, 99]
  assert list(classes[4]) == [401, 415, 429, 445, 459, 465, 481, 489, 490, 499]
  c = base_config()
  c.dataset, c.data.source = "dgm-imagenet50", "files"
  with pytest.raises(ConfigError, match="no ILSVRC-2012 folder"):  # no data.path
    validate(c)


def test_cifar10_needs_a_cifar_source():
  c = base_config()
  c.dataset, c.data.source = "dgm-cifar10", "bundled"
  with pytest.raises(ConfigError, match="CIFAR-10 has no data.source='bundled'"):
    validate(c)
  c.data.source = "tfds"
  validate(c)


def test_registered_one_class_benchmarks():
  for name, dataset in (("dgm-mnist", "mnist"), ("dgm-svhn", "svhn"), ("dgm-cifar10", "cifar10")):
    cls = benchmarks.REGISTRY[name]
    assert cls.dataset == dataset and cls.kind == "class-incremental"
    assert cls.num_tasks == 10 and cls.classes_per_task == 1
