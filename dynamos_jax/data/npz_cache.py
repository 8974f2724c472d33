"""A cache of decoded datasets: four host arrays in one .npz, written atomically.

Decoding a dataset from JPEGs can take minutes to hours (ImageNet-50); its
preprocessed arrays are saved once as ``<folder>/<name>-<key>.npz``, the key
hashing everything the arrays depend on (a format version, the class
selection, the file names). A file of another key, a truncated or otherwise
unreadable file is reported in one line on stderr and rebuilt, never a
traceback. Writes go to a temporary file in the same folder and are moved in
place with ``os.replace``, so a killed run leaves no half-written cache.
"""

import hashlib
import json
import os
import sys
import tempfile
from typing import Callable
import zipfile

import numpy as np

# Bump when what a cache holds changes: old caches then miss.
_FORMAT = 1
_KEYS = ('train_images', 'train_labels', 'test_images', 'test_labels')


def user_cache() -> str:
  """$XDG_CACHE_HOME/dynamos_jax, default ~/.cache/dynamos_jax."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'dynamos_jax')


def cache_key(description: dict) -> str:
  """A 20-hex-digit key of a JSON-able ``description`` of what is cached (and _FORMAT)."""
  text = json.dumps({'format': _FORMAT, **description}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read(path: str, key: str, image_shape: tuple) -> tuple[np.ndarray, ...] | None:
  """The four arrays cached at ``path`` under ``key``; None when absent or unusable."""
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = tuple(z[k] for k in _KEYS)
      stored = str(z['key'])
    images, labels = arrays[::2], arrays[1::2]
    shapes_ok = all(x.dtype == np.uint8 and x.shape[1:] == image_shape for x in images) and all(
      y.shape == (x.shape[0],) for x, y in zip(images, labels)
    )
    if stored == key and shapes_ok:
      return arrays
    problem = 'another key' if stored != key else 'arrays of unexpected shapes'
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    # np.load reports a truncated .npz through several exception types.
    problem = type(e).__name__
  print(f'cache {path} is unusable ({problem}); rebuilding it.', file=sys.stderr)
  return None


def _write(folder: str, path: str, key: str, arrays: tuple[np.ndarray, ...]) -> bool:
  """Writes ``arrays`` to ``path`` atomically (temp file + os.replace); False on failure."""
  tmp = None
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix='.npz.tmp', delete=False) as f:
      tmp = f.name
      np.savez(f, key=np.asarray(key), **dict(zip(_KEYS, arrays)))
    os.replace(tmp, path)
    return True
  except OSError:
    if tmp and os.path.exists(tmp):
      os.remove(tmp)
    return False


def cached(
  name: str, key: str, folders: list[str], image_shape: tuple, build: Callable[[], tuple]
) -> tuple[np.ndarray, ...]:
  """(train_images, train_labels, test_images, test_labels) from the cache or ``build()``.

  Args:
    name: the file's prefix, e.g. 'imagenet50'.
    key: ``cache_key`` of what the arrays depend on.
    folders: where to look, in order; the first writable one receives a new cache.
    image_shape: (H, W, C) every cached image must have.
    build: makes the four arrays (images uint8 [N, H, W, C], labels [N]).
  """
  file = f'{name}-{key}.npz'
  for folder in folders:
    arrays = _read(os.path.join(folder, file), key, tuple(image_shape))
    if arrays is not None:
      return arrays
  print(
    f'{name}: decoding the images once; they will be cached as {file} in the first '
    f'writable of {folders}.',
    file=sys.stderr,
  )
  arrays = tuple(build())
  for folder in folders:
    if _write(folder, os.path.join(folder, file), key, arrays):
      return arrays
  print(
    f'{name}: none of {folders} is writable, so the decoded images are not cached '
    '(give a writable cache folder or set XDG_CACHE_HOME).',
    file=sys.stderr,
  )
  return arrays
