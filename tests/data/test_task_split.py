"""Split CIFAR-100 and Tiny ImageNet: their data sources, tasks, crops and protocols."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import benchmarks
from dynamos_jax.benchmarks import tiny_imagenet as tin
from dynamos_jax.config import base_config
from dynamos_jax.data import sources
from dynamos_jax.errors import DataError

from image_data import class_colour, make_tiny_imagenet, write_cifar_pickle


def _dataset(name, classes, per_class, side):
  """Random images; image i of class c carries c in pixel (0, 0, 0) and i in (0, 0, 1)."""
  rng = np.random.default_rng(0)

  def split(n):
    labels = np.repeat(np.arange(classes, dtype=np.int32), n)
    images = rng.integers(0, 256, (len(labels), side, side, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels
    images[:, 0, 0, 1] = np.arange(len(labels)) % 256
    return images, labels

  (x, y), (tx, ty) = split(per_class), split(1)
  return sources.ArrayDataset(name, x, y, tx, ty, classes)


def _benchmark(name, host, batch_size=4, seed=0):
  c = base_config()
  c.dataset, c.batch_size = name, batch_size
  data = benchmarks.DeviceData(
    host,
    jnp.asarray(host.train_images),
    jnp.asarray(host.train_labels),
    jnp.asarray(host.test_images),
  )
  return benchmarks.build(c, data, jax.random.key(seed), joint=False)


# ------------------------------------------------------------------- sources


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_tfds_under_mock(tmp_path, dataset, classes):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=60):
    ds = sources.load_dataset(dataset, "tfds", tfds_data_dir=str(tmp_path))
  assert ds.train_images.shape == (60, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert ds.num_classes == classes and ds.train_labels.max() < classes
  assert len(np.unique(ds.train_labels)) > 5  # Labels, not a constant.


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_python_pickles(tmp_path, dataset):
  rng = np.random.default_rng(0)
  folder, train_files, test_file, key = {
    "cifar10": (
      "cifar-10-batches-py",
      [f"data_batch_{i}" for i in range(1, 6)],
      "test_batch",
      "labels",
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels"),
  }[dataset]
  os.makedirs(tmp_path / folder)
  written = []
  for name in train_files + [test_file]:
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 100 if dataset == "cifar100" else 10, 3)
    write_cifar_pickle(str(tmp_path / folder / name), x, y, key)
    written.append((x, y))
  for path in (tmp_path, tmp_path / folder):  # The folder or the one above it.
    ds = sources.load_dataset(dataset, "files", path=str(path))
    np.testing.assert_array_equal(ds.train_images, np.concatenate([x for x, _ in written[:-1]]))
    np.testing.assert_array_equal(ds.train_labels, np.concatenate([y for _, y in written[:-1]]))
    np.testing.assert_array_equal(ds.test_images, written[-1][0])
  # The red plane comes first in a row: a row of 1024 x 7, then zeros, is a red image.
  data = np.zeros((1, 3072), np.uint8)
  data[0, :1024] = 7
  import pickle

  with open(tmp_path / folder / test_file, "wb") as f:
    pickle.dump({b"data": data, key.encode(): [1]}, f, protocol=2)
  ds = sources.load_dataset(dataset, "files", path=str(tmp_path))
  assert np.all(ds.test_images[0, ..., 0] == 7) and np.all(ds.test_images[0, ..., 1:] == 0)
  os.remove(tmp_path / folder / train_files[-1])
  with pytest.raises(DataError, match=train_files[-1]) as info:
    sources.load_dataset(dataset, "files", path=str(tmp_path))
  assert "\n" not in str(info.value)


def test_tiny_imagenet_folder(tmp_path, monkeypatch):
  from dynamos_jax.data import tiny_imagenet

  listed = make_tiny_imagenet(
    str(tmp_path / "tiny-imagenet-200"), classes=3, train=2, val=2, grey_first=True
  )
  with pytest.raises(DataError, match="lists 3 class ids .3 distinct., expected 200"):
    sources.load_dataset("tiny-imagenet", "files", path=str(tmp_path))
  # The loader on 3 classes: classes in sorted wnid order, files in sorted order.
  monkeypatch.setattr(tiny_imagenet, "CLASSES", 3)
  ds = sources.load_dataset("tiny-imagenet", "files", path=str(tmp_path))
  x, y, tx, ty = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
  assert x.shape == (6, 64, 64, 3) and tx.shape == (6, 64, 64, 3)
  np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(np.sort(ty), [0, 0, 1, 1, 2, 2])
  for images, labels in ((x[1:], y[1:]), (tx, ty)):  # x[0] is the grey one.
    for image, label in zip(images, labels):
      np.testing.assert_allclose(image.reshape(-1, 3).mean(0), class_colour(label), atol=3)
  assert np.all(x[0, ..., 0] == x[0, ..., 2])  # Grey replicated to RGB.
  assert listed != sorted(listed)  # wnids.txt order is not the class order.


def test_tiny_imagenet_bad_folders(tmp_path, monkeypatch):
  from dynamos_jax.data import tiny_imagenet

  root = tmp_path / "t"
  for path, match in ((tmp_path / "nowhere", "is not a folder"), (tmp_path, "wnids.txt")):
    with pytest.raises(DataError, match=match) as info:
      sources.load_dataset("tiny-imagenet", "files", path=str(path))
    assert "\n" not in str(info.value) and "tiny-imagenet-200.zip" in str(info.value)
  monkeypatch.setattr(tiny_imagenet, "CLASSES", 2)
  wnids = make_tiny_imagenet(str(root), classes=2, train=1, val=1)
  os.rename(root / "train" / sorted(wnids)[1], root / "elsewhere")
  with pytest.raises(DataError, match=f"train/{sorted(wnids)[1]}/images not found"):
    sources.load_dataset("tiny-imagenet", "files", path=str(root))
  os.rename(root / "elsewhere", root / "train" / sorted(wnids)[1])
  with open(root / "val" / "val_annotations.txt", "a") as f:
    f.write("val_9.JPEG\tn99999999\t0\t0\t1\t1\n")
  with pytest.raises(DataError, match="line 3 is not"):
    sources.load_dataset("tiny-imagenet", "files", path=str(root))
  with pytest.raises(DataError, match="no path"):
    sources.load_dataset("tiny-imagenet", "files", path=None)


# ---------------------------------------------------------------- benchmarks


def test_split_cifar100_tasks_and_labels():
  bench = _benchmark("split-cifar100", _dataset("cifar100", 100, 3, 4), batch_size=4)
  assert bench.kind == "task-incremental" and bench.num_classes == 10
  assert bench.batches == [8] * 10  # 30 samples a task at batch 4.
  for task in (0, 7):
    data = bench.epoch_data(task, 0)
    seen = []
    for row in range(data.order.shape[0]):
      b = data.batch(row)
      m = np.asarray(b.mask)
      classes = np.asarray(b.images[:, 0, 0, 0])[m]
      np.testing.assert_array_equal(classes // 10, task)  # Only the task's classes.
      np.testing.assert_array_equal(np.asarray(b.labels)[m], classes % 10)  # Within-task.
      seen += list(np.asarray(data.order[row])[m])
    assert sorted(seen) == list(
      np.flatnonzero(np.asarray(bench.data.host.train_labels) // 10 == task)
    )
  images, labels = bench.task_test_set(3)
  np.testing.assert_array_equal(np.asarray(images[:, 0, 0, 0]), 30 + np.arange(10))
  np.testing.assert_array_equal(labels, np.arange(10))


def test_protocols_of_a_task_split():
  bench = _benchmark("split-cifar100", _dataset("cifar100", 100, 1, 4))

  def per_task_heads(images, task):
    """Task t's head right on even tasks, off by one on odd ones; all heads side by side
    right for the first five tasks' classes, wrong beyond."""
    c = np.asarray(images[:, 0, 0, 0]).astype(int)
    if task is None:
      return jax.nn.one_hot(np.where(c < 50, c, (c + 1) % 100), 100)
    t = int(task)
    return jax.nn.one_hot((c % 10 + t % 2) % 10, 10)

  scores = bench.evaluate(per_task_heads, batch_size=4)
  assert scores["task_il"] == [100.0, 0.0] * 5
  assert scores["class_il"] == [100.0] * 5 + [0.0] * 5
  # One shared head (K logits): without the task it predicts as with it.
  shared = lambda images, task: per_task_heads(images, 0)
  scores = bench.evaluate(shared, batch_size=4)
  assert scores["class_il"] == scores["task_il"] == [100.0] * 10


def test_tiny_imagenet_crops():
  ramp = np.broadcast_to(
    (np.arange(64) * 2).astype(np.uint8)[None, None, :, None], (3, 64, 64, 3)
  ).copy()
  ramp[:, :, :, 1] = (np.arange(64) * 2)[None, :, None]  # Rows in green.
  centre = np.asarray(tin.center_crop(jnp.asarray(ramp)))
  np.testing.assert_array_equal(centre[0, 0, :, 0], np.arange(4, 60) * 2)
  np.testing.assert_array_equal(centre[0, :, 0, 1], np.arange(4, 60) * 2)
  # The whole image at its own size is itself.
  full = jnp.asarray([[0, 0, 64, 64]] * 3)
  np.testing.assert_array_equal(tin.resized_crops(jnp.asarray(ramp), full, 64), ramp)
  # Bilinear upscaling of a ramp is the ramp at the sampled positions (inside the box).
  box = np.array([[10, 5, 28, 28]] * 3)
  out = np.asarray(tin.resized_crops(jnp.asarray(ramp), jnp.asarray(box), 56), np.float64)
  x = np.arange(56)
  expected = 2 * (5 + (x + 0.5) * 28 / 56 - 0.5)
  np.testing.assert_allclose(out[0, 20, 2:-2, 0], expected[2:-2], atol=0.51)
  np.testing.assert_allclose(out[0, 2:-2, 20, 1], 2 * (10 + (x + 0.5) / 2 - 0.5)[2:-2], atol=0.51)
  # RandomResizedCrop's boxes: inside the image, area in [0.08, 1], ratio in [3/4, 4/3].
  boxes = np.asarray(tin.crop_boxes(jax.random.key(0), 4000, 64, 64))
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
  area = h * w / 4096
  assert area.min() > 0.07 and area.max() <= 1.0 and area.mean() > 0.4
  assert (np.maximum(w / h, h / w) < 4 / 3 + 0.1).all()
  assert (w > h).mean() > 0.3 and (h > w).mean() > 0.3  # Both orientations.


def test_tiny_imagenet_batches():
  host = _dataset("tiny-imagenet", 200, 2, 64)
  bench = _benchmark("tiny-imagenet", host, batch_size=8)
  assert bench.image_shape == (56, 56, 3) and bench.example().images.shape == (2, 56, 56, 3)
  assert bench.num_classes == 20 and bench.batches == [5] * 10
  a, b = bench.epoch_data(2, 0).batch(1), bench.epoch_data(2, 0).batch(1)
  np.testing.assert_array_equal(a.images, b.images)  # A function of (seed, task, epoch).
  assert a.images.shape == (8, 56, 56, 3)
  assert not np.array_equal(bench.epoch_data(2, 1).batch(1).images, a.images)
  assert set(np.asarray(a.labels)) <= set(range(20))
  hooks = bench.task_data(2).batches(8)
  first = hooks.batch(0)
  idx = np.asarray(hooks.order[0])
  np.testing.assert_array_equal(first.images, host.train_images[idx][:, 4:60, 4:60])
  images, labels = bench.task_test_set(9)
  assert images.shape == (20, 56, 56, 3)
  np.testing.assert_array_equal(labels, np.arange(20))


def test_seeds_in_one_program_see_their_own_crops_and_the_tasks_labels(
  tiny_config, tmp_path, monkeypatch
):
  from dynamos_jax import trainer

  host = _dataset("tiny-imagenet", 200, 2, 64)
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: host)
  c = tiny_config
  c.method, c.dataset, c.lr, c.epochs, c.batch_size = "slni", "tiny-imagenet", 0.01, 1, 8
  c.slni.update(width=8, heads="per_task", importance="none", regularizer="slni")
  c.train.max_steps_per_task, c.train.chunk_size = 2, 2
  one = trainer.train_and_evaluate(c, str(tmp_path / "one"))
  c.seeds = "0,1"
  two = trainer.train_and_evaluate(c, str(tmp_path / "two"))
  first, second = two["runs"]
  for protocol in ("class_il", "task_il"):
    assert first[protocol]["matrix"] == one[protocol]["matrix"]
  losses = lambda run: [e["loss"] for e in run["log"]]
  np.testing.assert_allclose(losses(first), losses(one), rtol=1e-6)
  assert losses(second) != losses(first)
  assert max(losses(first)) < 10  # Labels within the task: CE near log 20, not garbage.


def test_epoch_selection_reads_the_tasks_own_head(tiny_config, tmp_path, monkeypatch):
  from dynamos_jax import trainer
  from dynamos_jax.methods.slni import slni

  host = _dataset("cifar100", 100, 2, 8)
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: host)
  seen = []
  monkeypatch.setattr(slni.SLNI, "epoch_end", "accuracy")
  monkeypatch.setattr(
    slni.SLNI, "end_epoch", lambda self, state, task, accuracy: seen.append(accuracy) or state
  )
  c = tiny_config
  c.method, c.dataset, c.lr, c.epochs, c.batch_size = "slni", "split-cifar100", 0.05, 1, 4
  c.slni.update(width=8, heads="per_task", importance="none", regularizer="slni")
  c.train.max_steps_per_task, c.train.chunk_size = 3, 3
  results = trainer.train_and_evaluate(c, str(tmp_path))
  # One epoch a task: its accuracy is the task-IL entry of the evaluation after it.
  task_il = results["task_il"]["matrix"]
  np.testing.assert_allclose(seen, [task_il[t + 1][t] for t in range(10)])
  assert seen != [results["class_il"]["matrix"][t + 1][t] for t in range(10)]  # Not class-IL.
