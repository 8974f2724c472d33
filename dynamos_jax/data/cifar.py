"""CIFAR-10 and CIFAR-100 from the "python version" pickles of the official archives.

https://www.cs.toronto.edu/~kriz/cifar.html: ``cifar-10-python.tar.gz``
unpacks to ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``; labels under ``labels``), ``cifar-100-python.tar.gz`` to
``cifar-100-python/`` (``train``, ``test``; the 100 fine classes under
``fine_labels``). Each file is a pickled dict whose ``data`` is uint8
[N, 3072]: a row holds the red, green and blue 32x32 planes one after the
other, each row-major. The archives were pickled by Python 2, so the dict's
keys come back as bytes; files written by Python 3 (str keys) read the same.
Returns the raw arrays ``sources.load_dataset`` validates.
"""

import os
import pickle

import numpy as np

from dynamos_jax.errors import DataError

# dataset: (folder inside the archive, training files, test file, label key).
_LAYOUT = {
  'cifar10': (
    'cifar-10-batches-py',
    tuple(f'data_batch_{i}' for i in range(1, 6)),
    'test_batch',
    'labels',
  ),
  'cifar100': ('cifar-100-python', ('train',), 'test', 'fine_labels'),
}


def _help(dataset: str) -> str:
  folder, train, test, _ = _LAYOUT[dataset]
  archive = {'cifar10': 'cifar-10-python.tar.gz', 'cifar100': 'cifar-100-python.tar.gz'}[dataset]
  return (
    f'give the folder {folder} (holding {", ".join(train)} and {test}) or the folder '
    f'above it, unpacked from {archive} of https://www.cs.toronto.edu/~kriz/cifar.html'
  )


def loader(dataset: str):
  """The ``files`` loader of ``dataset`` ('cifar10' or 'cifar100'): (path, tfds_data_dir)
  -> (train_images [N, 32, 32, 3] uint8, train_labels [N], test_images, test_labels)."""

  def load(path: str | None, tfds_data_dir: str | None):
    del tfds_data_dir  # Only used by the tfds source.
    folder_name, train_files, test_file, _ = _LAYOUT[dataset]
    if path is None:
      raise DataError(f'{dataset}/files: no path given; {_help(dataset)}.')
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
      raise DataError(f'{dataset}/files: {path} is not a folder; {_help(dataset)}.')
    folder = os.path.join(path, folder_name)
    if not os.path.isdir(folder):
      folder = path
    for name in train_files + (test_file,):
      if not os.path.isfile(os.path.join(folder, name)):
        raise DataError(
          f'{dataset}/files: {os.path.join(folder, name)} not found; {_help(dataset)}.'
        )
    train = [_read(dataset, os.path.join(folder, name)) for name in train_files]
    test_x, test_y = _read(dataset, os.path.join(folder, test_file))
    return (
      np.concatenate([x for x, _ in train]),
      np.concatenate([y for _, y in train]),
      test_x,
      test_y,
    )

  return load


def _read(dataset: str, path: str) -> tuple[np.ndarray, np.ndarray]:
  """One pickle: images uint8 [N, 32, 32, 3] and labels int64 [N]."""
  label_key = _LAYOUT[dataset][3]
  try:
    with open(path, 'rb') as f:
      raw = pickle.load(f, encoding='bytes')
    entries = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    data, labels = np.asarray(entries['data']), np.asarray(entries[label_key], np.int64)
  except (
    OSError,
    EOFError,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
  ) as e:
    raise DataError(
      f'{dataset}/files: {path} is not a CIFAR python pickle with data and '
      f'{label_key} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})'
      f'; re-download it.'
    ) from e
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
    raise DataError(
      f'{dataset}/files: {path} holds data of shape {data.shape} and dtype '
      f'{data.dtype}, expected uint8 [N, 3072]; re-download it.'
    )
  # Channel planes -> NHWC.
  images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return images, labels
