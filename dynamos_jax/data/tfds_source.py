"""The TFDS source of every dataset: a prepared TFDS copy read into host arrays.

Reads the array_record random-access data sources (no TensorFlow needed) and
never downloads: a dataset that is not prepared fails at once with the
command that prepares it. Tested offline under ``tfds.testing.mock_data``.
"""

from typing import Callable

import numpy as np

from dynamos_jax.errors import DataError


def loader(dataset: str, tfds_name: str) -> Callable:
  """Makes a loader reading the TFDS dataset `tfds_name` (array_record)."""

  def load(path: str | None, tfds_data_dir: str | None) -> tuple[np.ndarray, ...]:
    del path  # TFDS finds its files under tfds_data_dir.
    where = tfds_data_dir or '~/tensorflow_datasets (the TFDS default)'
    try:
      # Imported here: tensorflow_datasets takes seconds to import.
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise DataError(
        f'{dataset}/tfds: tensorflow_datasets is not installed; '
        'run `pip install tensorflow-datasets` or use source '
        'files.'
      ) from e
    try:
      # download=False: never reach for the network from a training run; a
      # missing dataset should fail at once with instructions instead.
      sources = tfds.data_source(
        tfds_name,
        split=['train', 'test'],
        data_dir=tfds_data_dir,
        download=False,
        builder_kwargs={'file_format': 'array_record'},
      )
    except Exception as e:  # pylint: disable=broad-except
      # TFDS reports an unprepared dataset through several exception types
      # (KeyError for empty splits, FileNotFoundError, AssertionError, ...).
      raise DataError(
        f'{dataset}/tfds: {tfds_name} (array_record) is not prepared in '
        f'{where} ({type(e).__name__}); prepare it once with internet '
        f'(`tfds build {tfds_name} --file_format=array_record '
        f'--data_dir=DIR`, or `pip install tensorflow-cpu` then '
        f'tfds.data_source({tfds_name!r}, data_dir=DIR)) or use source '
        'files.'
      ) from e
    train, test = (_read_split(ds) for ds in sources)
    return train + test

  return load


def _read_split(ds) -> tuple[np.ndarray, np.ndarray]:
  """Reads a TFDS random-access data source into (images, labels) arrays.

  Items are read one by one: the batched `__getitems__` path fails under
  `tfds.testing.mock_data`, and per-item reads are fast enough for datasets
  of this size.

  Returns:
    Images uint8 [N, H, W, C] as stored (C is 1 for MNIST) and labels [N].
  """
  items = [ds[i] for i in range(len(ds))]
  if not items:
    return np.zeros((0, 0, 0, 0), np.uint8), np.zeros((0,), np.int64)
  images = np.stack([np.asarray(item['image']) for item in items])
  labels = np.array([item['label'] for item in items], dtype=np.int64)
  return images, labels
