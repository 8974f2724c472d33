"""ImageNet-50 from TFDS ``imagenet2012`` (the ``tfds`` source of data/imagenet.py's dataset).

TFDS ``imagenet2012`` is a manual download (ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in ``DIR/downloads/manual``, then ``tfds build
imagenet2012 --file_format=array_record --data_dir=DIR``, which needs
TensorFlow once). Its labels are the sorted-synset positions (its label file
lists the 1,000 wnids sorted), so ``imagenet.SELECTION`` applies as it is. The
``train`` and ``validation`` splits are filtered to the 50 classes and
preprocessed by ``imagenet``'s Resize(32) + CenterCrop(32); each class's
images are ordered by file name, the order of the files source. TFDS
re-encoded its 22 CMYK JPEGs and one PNG as RGB JPEGs, so those images differ
slightly from the files source's. Every record (1.33 M) is read for its
label, but only the selected classes' JPEGs are decoded (by PIL, from their
bytes: ``SkipDecoding``); the result is cached (``npz_cache``) in
``tfds_data_dir`` if writable, else ``$XDG_CACHE_HOME/dynamos_jax``.
"""

import concurrent.futures
import io
import os
import sys
from typing import Sequence

import numpy as np
from PIL import Image
import tqdm

from dynamos_jax.data import imagenet, npz_cache
from dynamos_jax.errors import DataError

_TFDS_NAME = 'imagenet2012'
_CHUNK = 1024  # kept records decoded together
_TFDS_SPLITS = ('train', 'validation')


def load(
  path: str | None,
  tfds_data_dir: str | None,
  *,
  selection: Sequence[int] = imagenet.SELECTION,
  cache_dir: str | None = None,
  workers: int | None = None,
  progress: bool = True,
) -> tuple[np.ndarray, ...]:
  """The ``tfds`` loader: TFDS imagenet2012's train and validation as ``imagenet.load_files``.

  Args:
    path: unused (the files source's argument).
    tfds_data_dir: the TFDS data folder (None: ~/tensorflow_datasets).
    selection: TFDS labels (= sorted-synset positions), label k = ``selection[k]``.
    cache_dir: where the decoded arrays are cached (default: tfds_data_dir if
      writable, else the user cache).
    workers: decoding threads (default: the CPU count, at most 16).
    progress: show a progress bar while reading.

  Returns:
    As ``imagenet.load_files``: images uint8 [N, 32, 32, 3], int64 labels [N],
    train then test.
  """
  del path  # TFDS finds its files under tfds_data_dir.
  where = tfds_data_dir or '~/tensorflow_datasets (the TFDS default)'
  try:
    # Imported here: tensorflow_datasets takes seconds to import.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
      'imagenet50/tfds: tensorflow_datasets is not installed; run '
      '`pip install tensorflow-datasets` or use source files.'
    ) from e
  try:
    # download=False: imagenet2012 is a manual download anyway; fail at once with the recipe.
    # SkipDecoding: the images come as their JPEG bytes, decoded here only for the
    # selected classes (and by PIL, as the files source does).
    splits = tfds.data_source(
      _TFDS_NAME,
      split=list(_TFDS_SPLITS),
      data_dir=tfds_data_dir,
      download=False,
      builder_kwargs={'file_format': 'array_record'},
      decoders={'image': tfds.decode.SkipDecoding()},
    )
  except Exception as e:  # pylint: disable=broad-except
    # TFDS reports an unprepared dataset through several exception types.
    raise DataError(
      f'imagenet50/tfds: {_TFDS_NAME} (array_record, splits train and validation) is not '
      f'prepared in {where} ({type(e).__name__}); put ILSVRC2012_img_train.tar and '
      'ILSVRC2012_img_val.tar in DIR/downloads/manual and run `tfds build '
      f'{_TFDS_NAME} --file_format=array_record --data_dir=DIR` once (needs tensorflow), '
      'or use source files.'
    ) from e
  label = {int(c): k for k, c in enumerate(selection)}
  if len(label) != len(selection):
    raise DataError(f'imagenet50/tfds: the class selection {list(selection)} repeats a class.')

  def build():
    out = []
    for name, ds in zip(_TFDS_SPLITS, splits):
      out += _read_tfds_split(ds, label, f'imagenet50 tfds {name}', workers, progress)
    return out

  info = getattr(splits[0], 'dataset_info', None)
  key = npz_cache.cache_key(
    {
      'imagenet50_tfds': imagenet.FORMAT,
      'selection': [int(c) for c in selection],
      'version': str(getattr(info, 'version', '')),
      'lengths': [len(ds) for ds in splits],
      'data_dir': os.path.abspath(os.path.expanduser(tfds_data_dir or '~/tensorflow_datasets')),
    }
  )
  if cache_dir is not None:
    folders = [os.path.expanduser(cache_dir)]
  else:
    data_dir = tfds_data_dir and os.path.expanduser(tfds_data_dir)
    folders = ([data_dir] if data_dir and os.access(data_dir, os.W_OK) else []) + [
      npz_cache.user_cache()
    ]
  return npz_cache.cached('imagenet50-tfds', key, folders, (imagenet.SIZE,) * 2 + (3,), build)


def _decode_record(record: tuple[str, object]) -> np.ndarray:
  """(where, image) of a TFDS record -> uint8 [32, 32, 3]; the image is the JPEG's bytes
  (SkipDecoding) or an array (a mock that decodes)."""
  where, image = record
  if not isinstance(image, bytes):
    return imagenet.resize_center_crop(np.asarray(image))
  try:
    with Image.open(io.BytesIO(image)) as pil:
      return imagenet.resize_center_crop_pil(pil.convert('RGB'))
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise DataError(
      f'imagenet50/tfds: {where} is not a readable image ({type(e).__name__}); '
      f'prepare {_TFDS_NAME} again.'
    ) from e


def _read_tfds_split(
  ds, label: dict[int, int], what: str, workers: int | None, progress: bool
) -> list[np.ndarray]:
  """[images uint8 [N, 32, 32, 3], labels int64 [N]] of the selected classes of ``ds``.

  Every record is read to see its label, but only the kept ones' JPEGs are
  decoded (threaded, in chunks so that few encoded images wait in memory). They
  come class by class in label order, by file name within a class (the order
  ``imagenet.load_files`` gives).
  """
  keys, images, pending = [], [], []
  bar = tqdm.tqdm(
    total=len(ds),
    desc=what,
    unit='record',
    disable=not progress,
    file=sys.stderr,
    dynamic_ncols=True,
    mininterval=2.0,
  )
  with bar, concurrent.futures.ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:
    for i in range(len(ds)):
      item = ds[i]  # One by one: the batched __getitems__ fails under tfds.testing.mock_data.
      k = label.get(int(item['label']))
      if k is not None:
        name = item.get('file_name', b'')
        name = name.decode() if isinstance(name, bytes) else str(name)
        keys.append((k, name, i))
        pending.append((f'{what} record {i} ({name})', item['image']))
      if len(pending) >= _CHUNK or (pending and i == len(ds) - 1):
        images += pool.map(_decode_record, pending)
        pending = []
      bar.update(1)
  order = sorted(range(len(keys)), key=keys.__getitem__)
  stacked = (
    np.stack([images[j] for j in order])
    if order
    else np.zeros((0, imagenet.SIZE, imagenet.SIZE, 3), np.uint8)
  )
  return [stacked, np.asarray([keys[j][0] for j in order], np.int64)]
