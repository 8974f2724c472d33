"""ILSVRC-2012 reduced to DGM's ImageNet-50: 50 classes, 32x32 uint8.

See docs/dgm.md#setting-and-protocol and docs/dgm.md#data-and-preprocessing.

Classes. Task t = 0..4 of ImageNet-50 takes the classes at positions
``BASE_CLASSES + 100 t`` of the 1,000 synset ids (wnids) in sorted order, and
labels them 10 t .. 10 t + 9 in that order (``class_indices``; the reference's
``class_idx_imnet`` and its ``ImageFolder(classes_idx=...)``). ``SELECTION`` is
the 50 positions in label order: label k is synset ``sorted(wnids)[SELECTION[k]]``.

Preprocessing (``resize_center_crop``), the reference's torchvision 0.2.1
``Resize(32)`` then ``CenterCrop(32)`` on the PIL image that ``ImageFolder``'s
loader returns (``Image.open(f).convert("RGB")``, so grey and CMYK JPEGs become
RGB): the shorter side becomes 32 and the longer ``int(32 * long / short)``
(truncated), resampled by PIL's bilinear filter (PIL antialiases when it
shrinks); then the central 32x32, its offset ``int(round((L - 32) / 2))`` on
the long side (Python's round: halves go to even, so 33 -> 0, 35 -> 2, 37 -> 2;
torchvision 0.8 rounded halves up instead, later versions use round() again).
Pixels can differ from the reference's by PIL version (it used Pillow 5.1).

Source ``files``: ``path`` is the ILSVRC-2012 root holding

  ROOT/train/<wnid>/*.JPEG          the 1,000 class folders (about 1,300 images each)
  ROOT/val/<wnid>/*.JPEG            the 50,000 validation images by class (the usual
                                    "valprep.sh" layout), or
  ROOT/val/*.JPEG + LOC_val_solution.csv   flat, labelled by Kaggle's csv
                                    (``ImageId,PredictionString``, the wnid first),
                                    found in ROOT, ROOT/val or up to three folders
                                    above ROOT (Kaggle's ILSVRC/Data/CLS-LOC root).

All 1,000 class folders must be in train/ (a class is its position in sorted
order, so a partial copy would pick other classes; hidden folders are ignored).
Only the 50 selected classes are decoded (about 65,000 JPEGs train + 2,500
val: minutes of CPU, a progress bar on stderr; a thread pool decodes, as
Pillow releases the GIL while it decodes and resamples).
The preprocessed arrays are cached once in one ``imagenet50-<key>.npz`` (about
200 MB), the key hashing the format version, the selection and the file
names: in ROOT when it is writable, else in ``$XDG_CACHE_HOME/dynamos_jax``
(default ``~/.cache/dynamos_jax``); a ``cache_dir`` argument overrides both.
Delete the file to force a rebuild; a corrupt one is rebuilt with a warning.
Images come class by class in label order, files in sorted order within a
class (ImageFolder's order); test = the official validation images.

Source ``tfds``: data/imagenet_tfds.py (TFDS ``imagenet2012``, the same
selection, preprocessing and order).
"""

import concurrent.futures
import csv
import os
import sys
from typing import Callable, Sequence

import numpy as np
from PIL import Image
import tqdm

from dynamos_jax.data import npz_cache
from dynamos_jax.errors import DataError

SIZE = 32  # every DGM ImageNet network takes 32x32 images
NUM_SYNSETS = 1000  # ILSVRC-2012's classes, sorted wnids = class positions
# cfg_imnet_dgmw.yml: class_idx_imnet; task t adds 100 t.
BASE_CLASSES = (1, 15, 29, 45, 59, 65, 81, 89, 90, 99)
NUM_TASKS = 5  # ImageNet-50 (the reference loops 10, the paper reports 5)
# Bump when the preprocessing or the file order changes: old caches then miss.
FORMAT = 1
# The reference's ImageFolder extensions (utils/folder.py), compared lower-case.
_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm')
_CSV = 'LOC_val_solution.csv'
_HELP = (
  'give the ILSVRC-2012 root holding train/<wnid>/*.JPEG (all 1,000 class folders) '
  'and val/ either as val/<wnid>/*.JPEG or flat val/*.JPEG with ' + _CSV
)


def class_indices(num_tasks: int = NUM_TASKS) -> np.ndarray:
  """int [num_tasks, 10]: row t holds task t's sorted-synset positions, in label order."""
  return np.asarray(BASE_CLASSES)[None, :] + 100 * np.arange(num_tasks)[:, None]


# Label k of ImageNet-50 is the synset at sorted position SELECTION[k].
SELECTION = tuple(int(i) for i in class_indices().ravel())


# ------------------------------------------------------------- preprocessing


def resized_size(height: int, width: int, size: int = SIZE) -> tuple[int, int]:
  """(new_height, new_width) of torchvision's ``Resize(size)``: short side -> size."""
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


def crop_offsets(height: int, width: int, size: int = SIZE) -> tuple[int, int]:
  """(top, left) of torchvision's ``CenterCrop(size)`` on a height x width image."""
  return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def resize_center_crop_pil(image: Image.Image, size: int = SIZE) -> np.ndarray:
  """An RGB PIL image -> uint8 [size, size, 3] (see ``resize_center_crop``)."""
  width, height = image.size
  new_height, new_width = resized_size(height, width, size)
  # torchvision returns the image untouched when its short side is already `size`.
  if (new_height, new_width) != (height, width):
    image = image.resize((new_width, new_height), Image.BILINEAR)
  top, left = crop_offsets(new_height, new_width, size)
  return np.asarray(image)[top : top + size, left : left + size]


def resize_center_crop(image: np.ndarray, size: int = SIZE) -> np.ndarray:
  """uint8 [H, W, 3] (or grey [H, W] / [H, W, 1]) -> uint8 [size, size, 3].

  torchvision's ``Resize(size)`` (PIL bilinear, the long side truncated) then
  ``CenterCrop(size)``, as the module docstring states.
  """
  image = np.asarray(image)
  if (
    image.dtype != np.uint8
    or image.ndim not in (2, 3)
    or (image.ndim == 3 and image.shape[-1] not in (1, 3))
  ):
    raise DataError(
      f'imagenet50: an image of dtype {image.dtype} and shape {image.shape}, '
      'expected uint8 [H, W, 3] or [H, W]; check the data source.'
    )
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return resize_center_crop_pil(Image.fromarray(image).convert('RGB'), size)


def decode_file(path: str, size: int = SIZE) -> np.ndarray:
  """The image file at ``path`` -> uint8 [size, size, 3], as ImageFolder loads it."""
  try:
    with open(path, 'rb') as f, Image.open(f) as image:
      return resize_center_crop_pil(image.convert('RGB'), size)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise DataError(
      f'imagenet50/files: {path} is not a readable image ({type(e).__name__}); '
      'replace it from the ILSVRC-2012 archive.'
    ) from e


def _decode_all(
  fn: Callable, items: Sequence, what: str, workers: int | None, progress: bool
) -> np.ndarray:
  """uint8 [len(items), SIZE, SIZE, 3]: ``fn`` over ``items`` in order, threaded."""
  out = np.empty((len(items), SIZE, SIZE, 3), np.uint8)
  workers = workers or min(16, os.cpu_count() or 1)
  bar = tqdm.tqdm(
    total=len(items),
    desc=what,
    unit='img',
    disable=not progress,
    file=sys.stderr,
    dynamic_ncols=True,
    mininterval=2.0,
  )
  with bar, concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for i, image in enumerate(pool.map(fn, items)):
      out[i] = image
      bar.update(1)
  return out


# --------------------------------------------------------------------- files


def load_files(
  path: str | None,
  tfds_data_dir: str | None = None,
  *,
  selection: Sequence[int] = SELECTION,
  num_synsets: int = NUM_SYNSETS,
  cache_dir: str | None = None,
  workers: int | None = None,
  progress: bool = True,
) -> tuple[np.ndarray, ...]:
  """The ``files`` loader: (train_images, train_labels, test_images, test_labels).

  Args:
    path: the ILSVRC-2012 root (module docstring).
    tfds_data_dir: unused (the tfds source's argument).
    selection: sorted-synset positions, label k = ``selection[k]``.
    num_synsets: how many class folders train/ must hold.
    cache_dir: where the decoded arrays are cached (default: the root if
      writable, else the user cache).
    workers: decoding threads (default: the CPU count, at most 16).
    progress: show a progress bar while decoding.

  Returns:
    Images uint8 [N, 32, 32, 3] and int64 labels [N] in 0..len(selection) - 1,
    train then test (the official validation images).
  """
  del tfds_data_dir  # Only used by the tfds source.
  root = _root(path)
  wnids = _synsets(os.path.join(root, 'train'), selection, num_synsets)
  train = [_class_files(os.path.join(root, 'train', w)) for w in wnids]
  val = _val_files(root, wnids)

  def build():
    out = []
    for split, files in (('train', train), ('val', val)):
      flat = [f for fs in files for f in fs]
      out.append(_decode_all(decode_file, flat, f'imagenet50 {split}', workers, progress))
      out.append(np.repeat(np.arange(len(files), dtype=np.int64), [len(fs) for fs in files]))
    return out

  # The key covers the file names, so adding or removing images rebuilds the cache.
  rel = lambda files: [[os.path.relpath(f, root) for f in fs] for fs in files]
  key = npz_cache.cache_key(
    {
      'imagenet50': FORMAT,
      'selection': list(selection),
      'wnids': wnids,
      'train': rel(train),
      'val': rel(val),
    }
  )
  if cache_dir is not None:
    folders = [os.path.expanduser(cache_dir)]
  else:
    folders = ([root] if os.access(root, os.W_OK) else []) + [npz_cache.user_cache()]
  return npz_cache.cached('imagenet50', key, folders, (SIZE, SIZE, 3), build)


def _root(path: str | None) -> str:
  """The checked ILSVRC-2012 root: a folder holding train/ and val/."""
  if path is None:
    raise DataError(f'imagenet50/files: no path given; {_HELP}.')
  root = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(root):
    raise DataError(f'imagenet50/files: {root} is not a folder; {_HELP}.')
  for split in ('train', 'val'):
    if not os.path.isdir(os.path.join(root, split)):
      raise DataError(f'imagenet50/files: {root} has no {split}/ folder; {_HELP}.')
  return root


def _synsets(train: str, selection: Sequence[int], num_synsets: int) -> list[str]:
  """The selected class folders' names (wnids), in label order."""
  # Hidden folders (.ipynb_checkpoints, ...) are no synsets; the reference would have
  # counted them and shifted every class after them.
  folders = sorted(
    d for d in os.listdir(train) if not d.startswith('.') and os.path.isdir(os.path.join(train, d))
  )
  if len(folders) != num_synsets:
    raise DataError(
      f'imagenet50/files: {train} holds {len(folders)} class folders, expected '
      f'all {num_synsets} (a class is its position in sorted order, so a partial '
      f'copy would select other classes); {_HELP}.'
    )
  bad = [i for i in selection if not 0 <= i < num_synsets]
  if bad or len(set(selection)) != len(selection):
    raise DataError(
      f'imagenet50/files: the class selection {list(selection)} must hold '
      f'distinct positions in 0..{num_synsets - 1}.'
    )
  return [folders[i] for i in selection]


def _is_image(name: str) -> bool:
  return name.lower().endswith(_EXTENSIONS)


def _class_files(folder: str) -> list[str]:
  """The images under ``folder`` in ImageFolder's order (sorted walk, sorted names)."""
  files = [
    os.path.join(where, name)
    for where, _, names in sorted(os.walk(folder))
    for name in sorted(names)
    if _is_image(name)
  ]
  if not files:
    raise DataError(
      f'imagenet50/files: {folder} holds no images ({", ".join(_EXTENSIONS)}); '
      're-extract that class from the ILSVRC-2012 archive.'
    )
  return files


def _val_files(root: str, wnids: list[str]) -> list[list[str]]:
  """Per selected class (label order), its validation images in sorted order."""
  val = os.path.join(root, 'val')
  if any(os.path.isdir(os.path.join(val, d)) for d in os.listdir(val) if not d.startswith('.')):
    # The class-subfolder layout: every selected class must be there.
    missing = [w for w in wnids if not os.path.isdir(os.path.join(val, w))]
    if missing:
      raise DataError(
        f'imagenet50/files: {val} has class folders but not {missing[0]} '
        f'({len(missing)} selected classes missing); {_HELP}.'
      )
    return [_class_files(os.path.join(val, w)) for w in wnids]
  solution = _find_csv(root)
  if solution is None:
    raise DataError(
      f'imagenet50/files: {val} holds neither class folders val/<wnid>/ nor flat '
      f'images with a {_CSV} in {root}, {val} or up to three folders above; '
      'sort the validation images into class folders (e.g. valprep.sh) or add '
      f'Kaggle\'s {_CSV}.'
    )
  label = {w: k for k, w in enumerate(wnids)}
  out = [[] for _ in wnids]
  for image_id, wnid in _read_csv(solution):
    if wnid in label:
      out[label[wnid]].append(os.path.join(val, image_id + '.JPEG'))
  for k, files in enumerate(out):
    if not files:
      raise DataError(
        f'imagenet50/files: {solution} lists no validation image of {wnids[k]}; '
        f'check that it is ILSVRC-2012\'s {_CSV}.'
      )
    for f in files:
      if not os.path.isfile(f):
        raise DataError(
          f'imagenet50/files: {solution} names {os.path.basename(f)}, which is '
          f'not in {val}; {_HELP}.'
        )
    files.sort()
  return out


def _find_csv(root: str) -> str | None:
  candidates = [os.path.join(root, _CSV), os.path.join(root, 'val', _CSV)]
  up = root
  for _ in range(3):
    up = os.path.dirname(up)
    candidates.append(os.path.join(up, _CSV))
  return next((c for c in candidates if os.path.isfile(c)), None)


def _read_csv(path: str) -> list[tuple[str, str]]:
  """(image id, wnid) of each row of Kaggle's LOC_val_solution.csv."""
  rows = []
  with open(path, newline='') as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if not header or [h.strip() for h in header[:2]] != ['ImageId', 'PredictionString']:
      raise DataError(
        f'imagenet50/files: {path} does not start with the header '
        '"ImageId,PredictionString"; check that it is Kaggle\'s ' + _CSV + '.'
      )
    for number, row in enumerate(reader, 2):
      if not row:
        continue
      fields = row[1].split() if len(row) > 1 else []
      if not row[0].strip() or not fields:
        raise DataError(
          f'imagenet50/files: {path} line {number} is not "<ImageId>,<wnid> '
          '<box> ..."; check that it is Kaggle\'s ' + _CSV + '.'
        )
      rows.append((row[0].strip(), fields[0]))
  return rows
