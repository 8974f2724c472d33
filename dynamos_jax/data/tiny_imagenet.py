"""Tiny ImageNet from its standard folder (``tiny-imagenet-200.zip`` of CS231n, unzipped).

Layout read:

  DIR/wnids.txt                         the 200 class ids (WordNet ids), one a line
  DIR/train/<wnid>/images/*.JPEG        500 training images of each class, 64x64
  DIR/val/images/*.JPEG                 10,000 validation images (50 a class)
  DIR/val/val_annotations.txt           "<file>\\t<wnid>\\t<box>" per validation image

``DIR`` may also be the folder above ``tiny-imagenet-200``. The labelled
``val`` split is the evaluation split (the official ``test`` images carry no
labels; the reference reports on ``val`` too). Class c is the c-th wnid in
sorted order; training images are read class by class in sorted file order,
validation images in the sorted order of their file names. Grey JPEGs (a few
of the training images) are converted to RGB. Returns the raw arrays
``sources.load_dataset`` validates (uint8 [N, 64, 64, 3], labels [N]).
"""

import os

import numpy as np
from PIL import Image

from dynamos_jax.errors import DataError

_FOLDER = 'tiny-imagenet-200'
CLASSES = 200  # ids in wnids.txt
_HELP = (
  'give the folder tiny-imagenet-200 (wnids.txt, train/<wnid>/images/*.JPEG, '
  'val/images/*.JPEG, val/val_annotations.txt) or the folder above it, unzipped from '
  'http://cs231n.stanford.edu/tiny-imagenet-200.zip'
)


def load(path: str | None, tfds_data_dir: str | None):
  """The ``files`` loader: (path, tfds_data_dir) -> (train_images, train_labels,
  test_images, test_labels), the test split being ``val``."""
  del tfds_data_dir  # Only used by the tfds source.
  if path is None:
    raise DataError(f'tiny-imagenet/files: no path given; {_HELP}.')
  root = os.path.expanduser(path)
  if not os.path.isdir(root):
    raise DataError(f'tiny-imagenet/files: {root} is not a folder; {_HELP}.')
  if os.path.isdir(os.path.join(root, _FOLDER)):
    root = os.path.join(root, _FOLDER)
  wnids = _wnids(root)
  label = {w: c for c, w in enumerate(wnids)}

  files, labels = [], []
  for wnid in wnids:
    folder = os.path.join(root, 'train', wnid, 'images')
    names = sorted(n for n in _listdir(folder) if _is_jpeg(n))
    if not names:
      raise DataError(f'tiny-imagenet/files: {folder} holds no .JPEG images; {_HELP}.')
    files += [os.path.join(folder, n) for n in names]
    labels += [label[wnid]] * len(names)
  train_x, train_y = _read_images(files), np.asarray(labels, np.int64)

  annotations = os.path.join(root, 'val', 'val_annotations.txt')
  val = _val_annotations(annotations, label)
  folder = os.path.join(root, 'val', 'images')
  for name in val:
    if not os.path.isfile(os.path.join(folder, name)):
      raise DataError(
        f'tiny-imagenet/files: {annotations} names {name}, which is not in {folder}; {_HELP}.'
      )
  names = sorted(val)
  test_x = _read_images([os.path.join(folder, n) for n in names])
  test_y = np.asarray([val[n] for n in names], np.int64)
  return train_x, train_y, test_x, test_y


def _is_jpeg(name: str) -> bool:
  return name.lower().endswith(('.jpeg', '.jpg'))


def _listdir(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    raise DataError(f'tiny-imagenet/files: {folder} not found; {_HELP}.')
  return os.listdir(folder)


def _wnids(root: str) -> list[str]:
  """The sorted class ids of wnids.txt (checked: present, non-empty, no repeats)."""
  path = os.path.join(root, 'wnids.txt')
  if not os.path.isfile(path):
    raise DataError(f'tiny-imagenet/files: {path} not found; {_HELP}.')
  with open(path) as f:
    wnids = [line.strip() for line in f if line.strip()]
  if len(wnids) != CLASSES or len(set(wnids)) != len(wnids):
    raise DataError(
      f'tiny-imagenet/files: {path} lists {len(wnids)} class ids '
      f'({len(set(wnids))} distinct), expected {CLASSES} distinct ids one a '
      'line; re-download the dataset.'
    )
  return sorted(wnids)


def _val_annotations(path: str, label: dict[str, int]) -> dict[str, int]:
  """{validation file name: class} from val_annotations.txt."""
  if not os.path.isfile(path):
    raise DataError(f'tiny-imagenet/files: {path} not found; {_HELP}.')
  out = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      fields = line.rstrip('\n').split('\t')
      if len(fields) < 2 or fields[1] not in label:
        raise DataError(
          f'tiny-imagenet/files: {path} line {number} is not '
          '"<file>\\t<wnid>\\t..." with a wnid of wnids.txt; re-download the '
          'dataset.'
        )
      out[fields[0]] = label[fields[1]]
  if not out:
    raise DataError(f'tiny-imagenet/files: {path} lists no images; re-download the dataset.')
  return out


def _read_images(paths: list[str]) -> np.ndarray:
  """uint8 [N, H, W, 3] of the JPEGs at ``paths`` (sizes checked by the caller)."""
  images = []
  for p in paths:
    try:
      with Image.open(p) as image:
        images.append(np.asarray(image.convert('RGB')))
    except (OSError, ValueError) as e:
      raise DataError(
        f'tiny-imagenet/files: {p} is not a readable image '
        f'({type(e).__name__}); re-download the dataset.'
      ) from e
  shapes = {x.shape for x in images}
  if len(shapes) > 1:
    raise DataError(
      f'tiny-imagenet/files: images of several sizes {sorted(shapes)[:3]} '
      'in one split, expected all 64x64; re-download the dataset.'
    )
  return np.stack(images)
