"""Tiny ImageNet in 10 tasks of 20 classes, a head per task (docs/slni.md#tiny-imagenet).

Task t holds classes ``20 t .. 20 t + 19`` with class c the c-th WordNet id
in sorted order (``data/tiny_imagenet.py``): the authors' class-to-task split
is only in their pre-split archive and cannot be rebuilt from their code, so
this is the documented choice, the same for every method and seed. Train on
the 500 training images of each class, evaluate on the 50 ``val`` images of
each class (the reference reports ``val`` too), both protocols of
``task_split.TaskSplit``.

Images are stored 64x64 and reach the methods as 56x56, as in the reference's
torchvision pipeline: training batches go through RandomResizedCrop(56)
(area fraction U(0.08, 1), aspect ratio U(3/4, 4/3), width and height swapped
with probability 1/2, up to 10 tries, else the whole image; bilinear resize)
and a horizontal flip with probability 1/2, drawn per (seed, task, epoch,
batch) on the device; evaluation and the methods' passes over a task (the
importance estimate) see the centre 56x56 crop. (The reference's "Resize 64"
first is the identity on 64x64 images; its mean/std normalisation is the
model's, ``methods/slni/vgg.py``.)
"""

import flax.struct
import jax
import jax.numpy as jnp

from dynamos_jax.benchmarks.base import register
from dynamos_jax.benchmarks.task_split import TaskSplit
from dynamos_jax.data.streams import Batch, EpochData

CROP = 56
# fold_in constant of the epoch's augmentation key (the shuffle uses the epoch key).
_AUGMENT = 2**31 - 3
_TRIES = 10
_SCALE = (0.08, 1.0)
_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def center_crop(images: jax.Array, size: int = CROP) -> jax.Array:
  """The centre ``size`` x ``size`` of images [M, H, W, C] (torchvision's offsets)."""
  top = int(round((images.shape[1] - size) / 2))
  left = int(round((images.shape[2] - size) / 2))
  return images[:, top : top + size, left : left + size]


def crop_boxes(key: jax.Array, count: int, height: int, width: int) -> jax.Array:
  """RandomResizedCrop's boxes (top, left, h, w) int32 [count, 4] for images H x W."""
  k_area, k_ratio, k_swap, k_top, k_left = jax.random.split(key, 5)
  area = jax.random.uniform(k_area, (count, _TRIES), minval=_SCALE[0], maxval=_SCALE[1])
  area = area * height * width
  ratio = jax.random.uniform(k_ratio, (count, _TRIES), minval=_RATIO[0], maxval=_RATIO[1])
  w = jnp.round(jnp.sqrt(area * ratio)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / ratio)).astype(jnp.int32)
  swap = jax.random.bernoulli(k_swap, 0.5, (count, _TRIES))
  w, h = jnp.where(swap, h, w), jnp.where(swap, w, h)
  fits = (w <= width) & (h <= height)
  first = jnp.argmax(fits, axis=1)  # The first try that fits.
  pick = lambda a: jnp.take_along_axis(a, first[:, None], 1)[:, 0]
  h, w, found = pick(h), pick(w), jnp.any(fits, axis=1)
  top = jnp.floor(jax.random.uniform(k_top, (count,)) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, (count,)) * (width - w + 1)).astype(jnp.int32)
  # Fallback: the centred square of the shorter side.
  side = min(height, width)
  return jnp.stack(
    [
      jnp.where(found, top, (height - side) // 2),
      jnp.where(found, left, (width - side) // 2),
      jnp.where(found, h, side),
      jnp.where(found, w, side),
    ],
    axis=1,
  )


def resized_crops(images: jax.Array, boxes: jax.Array, size: int = CROP) -> jax.Array:
  """Each image [M, H, W, C] uint8 cut to its box [M, 4] and resized to ``size``
  (bilinear, antialiased when shrinking, as PIL's resize), uint8 [M, size, size, C]."""

  def one(image, box):
    top, left, h, w = box.astype(jnp.float32)
    scale = jnp.stack([size / h, size / w])
    out = jax.image.scale_and_translate(
      image.astype(jnp.float32),
      (size, size, image.shape[-1]),
      (0, 1),
      scale,
      -jnp.stack([top, left]) * scale,
      method="linear",
      antialias=True,
    )
    return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)

  return jax.vmap(one)(images, boxes)


def augment(key: jax.Array, images: jax.Array) -> jax.Array:
  """RandomResizedCrop(56) and a random horizontal flip of images [M, 64, 64, 3]."""
  k_crop, k_flip = jax.random.split(key)
  boxes = crop_boxes(k_crop, images.shape[0], images.shape[1], images.shape[2])
  out = resized_crops(images, boxes)
  flip = jax.random.bernoulli(k_flip, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], out[:, :, ::-1], out)


@flax.struct.dataclass
class CroppedEpochData(EpochData):
  """``augment``: the epoch's augmentation key as raw key data (uint32), or None:
  every batch is centre-cropped (the task hooks' view)."""

  augment: jax.Array | None = None

  def batch(self, position):
    index = self.order[position]
    images = self.images[index]
    if self.augment is None:
      images = center_crop(images)
    else:
      key = jax.random.fold_in(jax.random.wrap_key_data(self.augment), position)
      images = augment(key, images)
    return Batch(images, self.labels[index], self.mask[position], self.task)


@register
class TinyImageNet(TaskSplit):
  """Tiny ImageNet, 10 tasks x 20 classes, 56x56 crops of the 64x64 images."""

  name = "tiny-imagenet"
  dataset = "tiny-imagenet"
  num_tasks = 10
  classes_per_task = 20

  @property
  def image_shape(self):
    return (CROP, CROP, 3)

  def _data(self, order, mask, task, key):
    raw = None if key is None else jax.random.key_data(jax.random.fold_in(key, _AUGMENT))
    return CroppedEpochData(
      self.data.train_images, self.train_labels, order, mask, jnp.int32(task), None, raw
    )

  def eval_view(self, images):
    return center_crop(images)
