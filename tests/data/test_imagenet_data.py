"""ILSVRC-2012 -> ImageNet-50 (data/imagenet.py): selection, preprocessing, sources, cache.

Fake ILSVRC trees are built in tmp_path: empty synset folders (names whose
sorted order differs from creation order) and a few small random JPEGs of odd
sizes in the selected ones. Expected images are recomputed independently: the
test's own size/crop arithmetic, PIL's decode and bilinear resize, numpy slicing.
"""

import csv
import glob
import io
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from dynamos_jax.benchmarks import one_class
from dynamos_jax.data import imagenet, imagenet_tfds, npz_cache, sources
from dynamos_jax.errors import DataError


def _wnids(n: int) -> list[str]:
  """n distinct synset-like names; sorted order is not creation order."""
  return [f'n{(i * 7919) % 100003:08d}' for i in range(n)]


def _expected_size(h: int, w: int) -> tuple[int, int]:
  """torchvision 0.2.1 Resize(32), written out: the short side -> 32, the long truncated."""
  if w < h:
    return int(32 * h / w), 32
  if h < w:
    return 32, int(32 * w / h)
  return 32, 32


def _expected(pil: Image.Image) -> np.ndarray:
  """Resize(32) + CenterCrop(32) of an RGB PIL image, recomputed independently."""
  w, h = pil.size
  nh, nw = _expected_size(h, w)
  x = np.asarray(pil.resize((nw, nh), Image.BILINEAR) if (nh, nw) != (h, w) else pil)
  top, left = int(round((nh - 32) / 2)), int(round((nw - 32) / 2))
  return x[top : top + 32, left : left + 32]


def _expected_file(path: str) -> np.ndarray:
  with Image.open(path) as image:
    return _expected(image.convert('RGB'))


_SIZES = [(37, 53), (53, 37), (32, 100), (100, 33), (40, 31), (45, 45)]


def _jpeg(path: str, rng: np.random.Generator, size: tuple[int, int], mode: str = 'RGB'):
  h, w = size
  image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
  if mode != 'RGB':
    image = image.convert(mode)
  image.save(path, quality=90)


def make_tree(
  root,
  num_synsets: int,
  selection,
  train: int = 2,
  val: int = 1,
  layout: str = 'folders',
  seed: int = 0,
) -> list[str]:
  """A fake ILSVRC root; returns the selected wnids in label order. Image i of a class
  has size _SIZES[(class + i) % 6]; the first class's first train image is grey and its
  second (if any) CMYK."""
  rng = np.random.default_rng(seed)
  wnids = _wnids(num_synsets)
  for w in wnids[::-1]:
    os.makedirs(os.path.join(root, 'train', w))
  os.makedirs(os.path.join(root, 'val'))
  chosen = [sorted(wnids)[i] for i in selection]
  rows = []
  for k, w in enumerate(chosen):
    for i in range(train):
      mode = ('L', 'CMYK')[i] if k == 0 and i < 2 else 'RGB'
      _jpeg(os.path.join(root, 'train', w, f'{w}_{9 - i}.JPEG'), rng, _SIZES[(k + i) % 6], mode)
    for i in range(val):
      name = f'ILSVRC2012_val_{k * 10 + i + 1:08d}'
      if layout == 'folders':
        os.makedirs(os.path.join(root, 'val', w), exist_ok=True)
        path = os.path.join(root, 'val', w, name + '.JPEG')
      else:
        path = os.path.join(root, 'val', name + '.JPEG')
      _jpeg(path, rng, _SIZES[(k + i + 3) % 6])
      rows.append((name, f'{w} 1 2 30 30 {w} 3 4 20 20'))
  if layout == 'csv':
    with open(os.path.join(root, 'LOC_val_solution.csv'), 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['ImageId', 'PredictionString'])
      writer.writerows(rows[::-1])
  return chosen


_SMALL = (7, 2, 11)  # label order != sorted order, to see the remapping
_LOAD = dict(selection=_SMALL, num_synsets=12, progress=False, workers=2)


# ----------------------------------------------------------- selection


def test_selection_matches_benchmark_and_hand_values():
  np.testing.assert_array_equal(imagenet.class_indices(), one_class.imagenet_class_indices())
  np.testing.assert_array_equal(imagenet.class_indices(3), one_class.imagenet_class_indices(3))
  assert imagenet.SELECTION[:10] == (1, 15, 29, 45, 59, 65, 81, 89, 90, 99)
  assert imagenet.SELECTION[10] == 101 and imagenet.SELECTION[-1] == 499
  assert imagenet.SELECTION[23] == 245  # task 2, class 3: 45 + 200
  assert len(set(imagenet.SELECTION)) == 50


# ------------------------------------------------------- preprocessing


def test_size_and_crop_arithmetic_by_hand():
  # 500 x 375 (h x w): w short -> h = int(32 * 500 / 375) = int(42.67) = 42; top = round(5).
  assert imagenet.resized_size(500, 375) == (42, 32)
  assert imagenet.crop_offsets(42, 32) == (5, 0)
  # 37 x 53: h short -> w = int(32 * 53 / 37) = int(45.84) = 45; left = round(6.5) = 6 (even).
  assert imagenet.resized_size(37, 53) == (32, 45)
  assert imagenet.crop_offsets(32, 45) == (0, 6)
  # Halves round to even (Python 3's round in torchvision 0.2.1): 33 -> 0, 35 -> 2, 37 -> 2.
  assert [imagenet.crop_offsets(32, w)[1] for w in (33, 35, 37, 39)] == [0, 2, 2, 4]
  assert imagenet.resized_size(32, 100) == (32, 100)  # short side already 32: untouched
  assert imagenet.resized_size(31, 40) == (32, 41)  # upsampling: int(41.29)


@pytest.mark.parametrize('size', _SIZES + [(32, 32), (31, 40), (300, 201)])
def test_resize_center_crop_matches_independent(size):
  rng = np.random.default_rng(sum(size))
  x = rng.integers(0, 256, size + (3,), dtype=np.uint8)
  out = imagenet.resize_center_crop(x)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, _expected(Image.fromarray(x)))
  grey = x[..., 0]
  np.testing.assert_array_equal(
    imagenet.resize_center_crop(grey),
    imagenet.resize_center_crop(np.repeat(grey[..., None], 3, -1)),
  )


def test_resize_center_crop_rejects_bad_arrays():
  with pytest.raises(DataError, match='uint8'):
    imagenet.resize_center_crop(np.zeros((40, 40, 3), np.float32))


# --------------------------------------------------------------- files


def test_files_labels_order_and_pixels(tmp_path):
  root = str(tmp_path / 'ilsvrc')
  chosen = make_tree(root, 12, _SMALL, train=3, val=2)
  x, y, tx, ty = imagenet.load_files(root, None, **_LOAD)
  np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(ty, [0, 0, 1, 1, 2, 2])
  files = [f for w in chosen for f in sorted(glob.glob(os.path.join(root, 'train', w, '*')))]
  assert os.path.basename(files[0]).endswith('_7.JPEG')  # sorted names, not creation order
  for image, f in zip(x, files):
    np.testing.assert_array_equal(image, _expected_file(f))
  val = [f for w in chosen for f in sorted(glob.glob(os.path.join(root, 'val', w, '*')))]
  for image, f in zip(tx, val):
    np.testing.assert_array_equal(image, _expected_file(f))
  # The grey and CMYK JPEGs of class 0 (files _9 and _8, the last two) came out as RGB.
  with Image.open(files[2]) as im:
    assert im.mode == 'L'
  np.testing.assert_array_equal(x[2][..., 0], x[2][..., 2])  # grey -> equal channels


def test_files_flat_val_with_csv_equals_folders(tmp_path):
  a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
  make_tree(a, 12, _SMALL, val=2, layout='folders')
  make_tree(b, 12, _SMALL, val=2, layout='csv')
  ours, flat = imagenet.load_files(a, None, **_LOAD), imagenet.load_files(b, None, **_LOAD)
  for u, v in zip(ours, flat):
    np.testing.assert_array_equal(u, v)
  # Kaggle's place for the csv: three folders above the ILSVRC/Data/CLS-LOC root.
  kaggle = tmp_path / 'kaggle'
  os.makedirs(kaggle / 'ILSVRC' / 'Data')
  shutil.move(b, kaggle / 'ILSVRC' / 'Data' / 'CLS-LOC')
  shutil.move(kaggle / 'ILSVRC' / 'Data' / 'CLS-LOC' / 'LOC_val_solution.csv', kaggle)
  for f in glob.glob(str(kaggle / 'ILSVRC' / 'Data' / 'CLS-LOC' / '*.npz')):
    os.remove(f)  # no cache: really read the csv from its new place
  again = imagenet.load_files(str(kaggle / 'ILSVRC' / 'Data' / 'CLS-LOC'), None, **_LOAD)
  np.testing.assert_array_equal(again[2], ours[2])


def test_cache_is_read_then_rebuilt_when_truncated(tmp_path, monkeypatch, capsys):
  root = str(tmp_path / 'ilsvrc')
  make_tree(root, 12, _SMALL)
  first = imagenet.load_files(root, None, **_LOAD)
  (cache,) = glob.glob(os.path.join(root, 'imagenet50-*.npz'))
  assert not glob.glob(os.path.join(root, '*.tmp'))

  def no_decoding(path, size=32):
    raise AssertionError(f'decoded {path} although cached')

  with monkeypatch.context() as m:
    m.setattr(imagenet, 'decode_file', no_decoding)
    second = imagenet.load_files(root, None, **_LOAD)
  for u, v in zip(first, second):
    np.testing.assert_array_equal(u, v)
  with open(cache, 'r+b') as f:
    f.truncate(os.path.getsize(cache) // 2)
  capsys.readouterr()
  third = imagenet.load_files(root, None, **_LOAD)
  assert 'unusable' in capsys.readouterr().err
  for u, v in zip(first, third):
    np.testing.assert_array_equal(u, v)
  assert glob.glob(os.path.join(root, 'imagenet50-*.npz')) == [cache]  # rewritten whole
  with np.load(cache) as z:
    np.testing.assert_array_equal(z['train_images'], first[0])
  # Another image in a selected class changes the key: a second cache file.
  w = sorted(_wnids(12))[_SMALL[1]]
  _jpeg(os.path.join(root, 'train', w, 'extra.JPEG'), np.random.default_rng(5), (40, 50))
  fourth = imagenet.load_files(root, None, **_LOAD)
  assert len(fourth[1]) == len(first[1]) + 1
  assert len(glob.glob(os.path.join(root, 'imagenet50-*.npz'))) == 2


def test_cache_folders(tmp_path, monkeypatch):
  root = str(tmp_path / 'ilsvrc')
  make_tree(root, 12, _SMALL, train=1)
  imagenet.load_files(root, None, cache_dir=str(tmp_path / 'mine'), **_LOAD)
  assert len(glob.glob(str(tmp_path / 'mine' / 'imagenet50-*.npz'))) == 1
  assert not glob.glob(os.path.join(root, '*.npz'))
  # An unwritable root: the user cache, $XDG_CACHE_HOME/dynamos_jax.
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  monkeypatch.setattr(imagenet.os, 'access', lambda path, mode: False)
  imagenet.load_files(root, None, **_LOAD)
  assert npz_cache.user_cache() == str(tmp_path / 'xdg' / 'dynamos_jax')
  assert len(glob.glob(str(tmp_path / 'xdg' / 'dynamos_jax' / 'imagenet50-*.npz'))) == 1


def _error(root, **kw) -> str:
  with pytest.raises(DataError) as info:
    imagenet.load_files(root, None, **{**_LOAD, **kw})
  message = str(info.value)
  assert '\n' not in message
  return message


def test_files_errors(tmp_path):
  assert 'no path' in _error(None)
  assert 'is not a folder' in _error(str(tmp_path / 'nowhere'))
  root = str(tmp_path / 'ilsvrc')
  chosen = make_tree(root, 12, _SMALL, train=1)
  message = _error(root, num_synsets=13)
  assert '12 class folders' in message and 'all 13' in message
  os.makedirs(os.path.join(root, 'train', '.ipynb_checkpoints'))  # hidden: not a synset
  assert imagenet.load_files(root, None, **_LOAD)[0].shape == (3, 32, 32, 3)
  os.makedirs(os.path.join(root, 'train', 'n99999999'))
  assert '13 class folders' in _error(root)
  os.rmdir(os.path.join(root, 'train', 'n99999999'))
  assert 'distinct positions' in _error(root, selection=(1, 1))
  shutil.rmtree(os.path.join(root, 'val', chosen[2]))
  assert chosen[2] in _error(root)  # val has class folders, but not this one
  for w in chosen[:2]:
    shutil.rmtree(os.path.join(root, 'val', w))
  os.makedirs(os.path.join(root, 'val', 'n00000001'))  # only an unselected class
  message = _error(root)
  assert chosen[0] in message and '3 selected classes missing' in message
  shutil.rmtree(os.path.join(root, 'val'))
  assert 'no val/' in _error(root)
  os.makedirs(os.path.join(root, 'val'))
  assert 'neither class folders' in _error(root)  # flat and no csv
  shutil.move(os.path.join(root, 'train'), os.path.join(root, 'train_'))
  assert 'no train/' in _error(root)


def test_files_errors_in_images(tmp_path):
  root = str(tmp_path / 'ilsvrc')
  chosen = make_tree(root, 12, _SMALL, train=1)
  bad = os.path.join(root, 'train', chosen[1], 'broken.JPEG')
  with open(bad, 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 not a jpeg')
  message = _error(root)
  assert bad in message and 'not a readable image' in message
  os.remove(bad)
  for f in glob.glob(os.path.join(root, 'train', chosen[0], '*')):
    os.remove(f)
  message = _error(root)
  assert os.path.join(root, 'train', chosen[0]) in message and 'no images' in message


def test_files_errors_in_csv(tmp_path):
  root = str(tmp_path / 'ilsvrc')
  make_tree(root, 12, _SMALL, layout='csv')
  os.remove(glob.glob(os.path.join(root, 'val', '*.JPEG'))[0])
  assert 'which is not in' in _error(root)
  with open(os.path.join(root, 'LOC_val_solution.csv'), 'w') as f:
    f.write('id,labels\nx,y\n')
  assert 'ImageId,PredictionString' in _error(root)


def test_sources_registration_full_selection(tmp_path):
  root = str(tmp_path / 'ilsvrc')
  make_tree(root, 1000, imagenet.SELECTION, train=1, val=1)
  ds = sources.load_dataset('imagenet50', 'files', root)
  assert ds.name == 'imagenet50' and ds.num_classes == 50
  assert ds.train_images.shape == (50, 32, 32, 3) and ds.train_images.dtype == np.uint8
  np.testing.assert_array_equal(ds.train_labels, np.arange(50))
  np.testing.assert_array_equal(ds.test_labels, np.arange(50))
  # Label 23 is the synset at sorted position 245.
  w = sorted(_wnids(1000))[245]
  (f,) = glob.glob(os.path.join(root, 'train', w, '*'))
  np.testing.assert_array_equal(ds.train_images[23], _expected_file(f))


# ---------------------------------------------------------------- tfds


def test_tfds_mock_controlled(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top (slow import)

  rng = np.random.default_rng(3)
  selection = imagenet.SELECTION
  # (label, file name, size): selected and unselected labels, names out of order.
  spec = {
    'train': [
      (15, 'n_b.JPEG', (37, 53)),
      (0, 'n_z.JPEG', (40, 40)),
      (1, 'n_c.JPEG', (53, 37)),
      (15, 'n_a.JPEG', (32, 100)),
      (499, 'n_d.JPEG', (100, 33)),
      (500, 'n_e.JPEG', (45, 45)),
    ],
    'validation': [
      (101, 'v_2.JPEG', (31, 40)),
      (2, 'v_1.JPEG', (60, 70)),
      (1, 'v_3.JPEG', (33, 64)),
    ],
  }
  data = {
    s: [
      {
        'label': np.asarray(c),
        'file_name': n,
        'image': rng.integers(0, 256, hw + (3,), dtype=np.uint8),
      }
      for c, n, hw in items
    ]
    for s, items in spec.items()
  }

  def as_data_source(self, split, decoders=None, deserialize_method=None, **kwargs):
    del self, decoders, deserialize_method, kwargs
    return [data[s] for s in split] if isinstance(split, list) else data[split]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    ds = sources.load_dataset('imagenet50', 'tfds', tfds_data_dir=str(tmp_path))
  # Kept: 1 (label 0), 15 (label 1: n_a before n_b), 499 (label 49); 0 and 500 dropped.
  np.testing.assert_array_equal(ds.train_labels, [0, 1, 1, 49])
  order = [2, 3, 0, 4]
  for image, i in zip(ds.train_images, order):
    np.testing.assert_array_equal(image, _expected(Image.fromarray(data['train'][i]['image'])))
  np.testing.assert_array_equal(ds.test_labels, [0, 10])
  assert ds.train_images.shape[1:] == (32, 32, 3) and ds.train_images.dtype == np.uint8
  assert selection.index(101) == 10
  assert len(glob.glob(str(tmp_path / 'imagenet50-tfds-*.npz'))) == 1


def _jpeg_bytes(rng, size, mode='RGB') -> bytes:
  buf = io.BytesIO()
  image = Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8))
  (image.convert(mode) if mode != 'RGB' else image).save(buf, format='JPEG', quality=90)
  return buf.getvalue()


def write_tfds_imagenet(data_dir: str, spec: dict) -> dict:
  """A real (tiny) TFDS imagenet2012 in array_record, written without TensorFlow:
  spec[split] = [(label, file name, jpeg bytes)]. Returns the builder's data folder."""
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top (slow import)

  builder = tfds.builder('imagenet2012', data_dir=data_dir, file_format='array_record')
  features = builder.info.features
  os.makedirs(builder.data_dir, exist_ok=True)
  infos = []
  for split, records in spec.items():
    path = os.path.join(builder.data_dir, f'imagenet2012-{split}.array_record-00000-of-00001')
    writer = ArrayRecordWriter(path, 'group_size:1')
    for label, name, jpeg in records:
      writer.write(
        features.serialize_example({'image': io.BytesIO(jpeg), 'label': label, 'file_name': name})
      )
    writer.close()
    infos.append(
      tfds.core.SplitInfo(name=split, shard_lengths=[len(records)], num_bytes=os.path.getsize(path))
    )
  builder.info.set_splits(tfds.core.SplitDict(infos))
  builder.info.write_to_directory(builder.data_dir)
  return builder.data_dir


def test_tfds_real_array_record(tmp_path, monkeypatch):
  rng = np.random.default_rng(4)
  spec = {
    'train': [
      (245, 'n_q_2.JPEG', _jpeg_bytes(rng, (37, 53))),
      (3, 'n_x.JPEG', _jpeg_bytes(rng, (40, 40))),
      (1, 'n_c.JPEG', _jpeg_bytes(rng, (53, 37), 'L')),
      (245, 'n_q_1.JPEG', _jpeg_bytes(rng, (32, 100))),
      (999, 'n_y.JPEG', _jpeg_bytes(rng, (45, 45))),
    ],
    'validation': [
      (499, 'v_9.JPEG', _jpeg_bytes(rng, (31, 40))),
      (1, 'v_5.JPEG', _jpeg_bytes(rng, (100, 33))),
    ],
  }
  write_tfds_imagenet(str(tmp_path), spec)
  ds = sources.load_dataset('imagenet50', 'tfds', tfds_data_dir=str(tmp_path))
  # Kept: 1 -> label 0, 245 -> label 23 (n_q_1 before n_q_2), 499 -> label 49.
  np.testing.assert_array_equal(ds.train_labels, [0, 23, 23])
  np.testing.assert_array_equal(ds.test_labels, [0, 49])
  for image, (split, i) in zip(
    list(ds.train_images) + list(ds.test_images),
    [('train', 2), ('train', 3), ('train', 0), ('validation', 1), ('validation', 0)],
  ):
    with Image.open(io.BytesIO(spec[split][i][2])) as pil:
      np.testing.assert_array_equal(image, _expected(pil.convert('RGB')))
  assert len(glob.glob(str(tmp_path / 'imagenet50-tfds-*.npz'))) == 1

  def no_decoding(record):
    raise AssertionError('decoded although cached')

  monkeypatch.setattr(imagenet_tfds, '_decode_record', no_decoding)
  again = sources.load_dataset('imagenet50', 'tfds', tfds_data_dir=str(tmp_path))
  np.testing.assert_array_equal(again.train_images, ds.train_images)


def test_tfds_corrupt_record(tmp_path):
  rng = np.random.default_rng(5)
  spec = {
    'train': [
      (1, 'n_ok.JPEG', _jpeg_bytes(rng, (40, 50))),
      (15, 'n_bad.JPEG', b'\xff\xd8\xff\xe0 not a jpeg'),
    ],
    'validation': [(1, 'v_1.JPEG', _jpeg_bytes(rng, (40, 50)))],
  }
  write_tfds_imagenet(str(tmp_path), spec)
  with pytest.raises(DataError, match='n_bad.JPEG') as info:
    imagenet_tfds.load(None, str(tmp_path), progress=False)
  assert 'record 1' in str(info.value) and '\n' not in str(info.value)


def test_tfds_not_prepared(tmp_path):
  with pytest.raises(DataError, match='not prepared') as info:
    sources.load_dataset('imagenet50', 'tfds', tfds_data_dir=str(tmp_path))
  message = str(info.value)
  assert '\n' not in message and 'downloads/manual' in message and str(tmp_path) in message
