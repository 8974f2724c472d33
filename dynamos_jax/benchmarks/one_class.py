"""DGM's benchmarks: MNIST, SVHN, CIFAR-10 as ten one-class tasks; ImageNet-50.

See docs/dgm.md#setting-and-protocol and docs/dgm.md#data-and-preprocessing.

Task t is class t (natural order 0..9), so a sample's label is its task. Images
are 32x32: MNIST's 28x28 digits are resized on the host with PIL's bilinear
filter on the uint8 image and kept as one grey channel (the reference's
``ToPILImage`` -> ``Resize(32)``: its float round trip x / 255 * 255 is exact
in float32 for every byte, so resizing the uint8 image is the same); SVHN and
CIFAR-10 are 32x32x3 already. A method scales them with
``discriminator.to_unit``.

Validation hold-out (docs/dgm.md#data-and-preprocessing), per class from the
seed: the class's training samples are permuted and the first ``int(0.15 n)``
(MNIST) are held out, the rest train, in the permuted order (the reference's
``shuffle(r, random_state=seed)``, ``r[:nvalid]`` / ``r[nvalid:]``); SVHN and
CIFAR-10 keep ``int(0.9 n)`` to train (``random_split``'s train length) and hold
out the rest. The permutations are JAX's, not scikit-learn's or torch's: the
same sizes, other samples.

Within a task the training samples come in ONE FIXED ORDER, the same every epoch
(docs/dgm.md#quirks-decided-deliberately): batch i of every epoch holds samples
i B .. i B + B - 1 of ``task_data(t).batches(B)``'s order, the last partial
batch padded and masked. A joint run (``joint = True`` methods: the JT upper
bound) trains one task of every class's training part, reshuffled every epoch
from the seed.

Evaluated per class (= per task) on the official test split: ``class_il`` is
each class's accuracy (%) with the argmax over the method's logits (which
mask unseen classes), so A_t is the mean of the accuracy-matrix row t over
the classes seen. One class per task makes task-IL 100 % by construction; it
is reported (every run's results carry both matrices) but says nothing.

ImageNet-50 (``dgm-imagenet50``; docs/dgm.md#setting-and-protocol; the authors'
``run_DGMw_imagenet.py`` and ``approaches/DGMw_imnet.py``): five tasks of
``classes_per_task`` = 10 classes, task t = labels 10 t .. 10 t + 9 (the
``imagenet50`` dataset's order: ``imagenet_class_indices``' synsets). As the
code: nothing is held out of the training folders (its "valid" evaluations are
on the official validation images, this benchmark's test split), and the real
images are reshuffled every epoch (its ``DataLoader(shuffle=True)``), here from
the seed (the key of (task, epoch)). The accuracy matrices stay per task, as the
project's other class-incremental benchmarks: entry (row, task) is the mean of
the task's ten per-class accuracies, so A_t, the row's mean over the tasks seen,
is the balanced mean over the classes seen
(docs/dgm.md#evaluation-and-model-selection; the test split has 50 images a
class, where this equals the task's sample accuracy); task-IL takes the argmax
over the task's ten classes. Top-5 accuracy (the code's second figure) is not
computed.
"""

import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dynamos_jax import accuracy as evaluation
from dynamos_jax.benchmarks import base
from dynamos_jax.benchmarks.base import Benchmark, DeviceData, TaskData, register
from dynamos_jax.data import imagenet, sources
from dynamos_jax.data.streams import EpochData, epoch_batches, num_batches
from dynamos_jax.errors import ConfigError, DataError

SIZE = 32  # every DGM network takes 32x32 images
# ImageNet-50 (docs/dgm.md#setting-and-protocol): task t uses these indices + 100 t of the
# alphabetically sorted class folders (cfg_imnet_dgmw.yml: class_idx_imnet); the loader's
# selection.
IMAGENET_BASE_CLASSES = imagenet.BASE_CLASSES
imagenet_class_indices = imagenet.class_indices  # [num_tasks, 10] sorted-synset positions


def resize_bilinear(images: np.ndarray, size: int = SIZE) -> np.ndarray:
  """uint8 [N, H, W, C] (C = 1 or 3) -> uint8 [N, size, size, C], PIL's bilinear per image.

  PIL resamples uint8 images in fixed point, horizontally then vertically,
  rounding to uint8 in between; going through PIL gives its exact bytes.
  """
  if images.shape[1:3] == (size, size):
    return images
  mode = {1: "L", 3: "RGB"}[images.shape[-1]]
  out = np.empty((images.shape[0], size, size, images.shape[-1]), np.uint8)
  for i, image in enumerate(images):
    pil = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
    out[i] = np.asarray(pil.resize((size, size), Image.BILINEAR)).reshape(size, size, -1)
  return out


def holdout_split(
  key: jax.Array, labels: np.ndarray, num_classes: int, fraction: float, train_rounding: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Per class, a seeded permutation of its samples split into (train, valid) index arrays
  (``base.holdout_split``, the permutations ``data.validation`` uses too).

  Args:
    key: the seed's data key.
    labels: int [N] the training labels.
    num_classes: K.
    fraction: the held-out share.
    train_rounding: False: hold out ``int(fraction n)`` (MNIST's reference);
      True: train on ``int((1 - fraction) n)`` (SVHN's ``random_split``).

  Returns:
    train, valid: per class, int32 sample indices in the permuted order.
  """
  if train_rounding:
    held = lambda n: n - int((1 - fraction) * n)
  else:
    held = lambda n: int(fraction * n)
  return base.holdout_split(key, labels, range(num_classes), held)


def _prepare(data: DeviceData, channels: int, name: str) -> DeviceData:
  """``data`` with 32x32 images of ``channels`` channels, on the host and the device.

  A run's later seeds receive the first seed's prepared data (``Experiment``'s
  ``shared_with``), which is returned as it is.
  """
  host = data.host
  if host.train_images.shape[1:] == (SIZE, SIZE, channels):
    return data

  def convert(images):
    images = images[..., :1] if channels == 1 else images  # grey: the 3 channels are equal
    if images.shape[-1] != channels:
      raise DataError(f"{name}: images have {images.shape[-1]} channels, expected {channels}")
    return resize_bilinear(images)

  train, test = convert(host.train_images), convert(host.test_images)
  prepared = sources.ArrayDataset(
    host.name, train, host.train_labels, test, host.test_labels, host.num_classes
  )
  return DeviceData(
    prepared, jax.device_put(train), jax.device_put(host.train_labels), jax.device_put(test)
  )


class OneClass(Benchmark):
  """Tasks of ``classes_per_task`` consecutive classes (see the module docstring).

  Class attributes (set by the subclasses):
    channels: 1 (grey, MNIST) or 3.
    holdout: the per-class validation share.
    train_rounding: how the hold-out's size is rounded (``holdout_split``).
    reshuffle: the real images reshuffled every epoch (ImageNet) instead of
      one fixed order.
    generator: the dgm method's G family (``dgm.generator=auto``).
  """

  kind = "class-incremental"
  no_validation = (
    "is one of DGM's benchmarks, which hold out their own share of each class for "
    "dgm.selection=best_valid (docs/dgm.md#data-and-preprocessing)"
  )
  num_tasks: ClassVar[int] = 10
  classes_per_task: ClassVar[int] = 1
  channels: ClassVar[int] = 3
  holdout: ClassVar[float] = 0.1
  train_rounding: ClassVar[bool] = True
  reshuffle: ClassVar[bool] = False
  generator: ClassVar[str] = "dcgan"

  def __init__(self, config, data, key, joint):
    data = _prepare(data, self.channels, self.name)
    super().__init__(config, data, key, joint)
    host = data.host
    self.num_classes = host.num_classes
    self.train_parts, self.valid_parts = holdout_split(
      key, host.train_labels, self.num_classes, self.holdout, self.train_rounding
    )
    if joint:
      self.task_indices = [np.concatenate(self.train_parts)]
      self.seen_after = [self.num_tasks]
    else:
      c = self.classes_per_task
      self.task_indices = [
        np.concatenate(self.train_parts[t * c : (t + 1) * c]) for t in range(self.num_tasks)
      ]
      self.seen_after = list(range(1, self.num_tasks + 1))
    self.batches = [num_batches(len(ix), config.batch_size) for ix in self.task_indices]
    self.epochs = config.epochs
    self.rows = max(self.batches)  # Every epoch padded to one shape (one order array shape).
    valid = np.concatenate(self.valid_parts)
    self._valid = (data.train_images[valid], np.asarray(host.train_labels)[valid])

  def _epoch(self, task: int, order, mask) -> EpochData:
    return EpochData(
      self.data.train_images,
      self.data.train_labels,
      jnp.asarray(order),
      jnp.asarray(mask),
      jnp.int32(task),
    )

  def epoch_data(self, task, epoch):
    indices = self.task_indices[task]
    if self.joint or self.reshuffle:  # JT, ImageNet: reshuffled each epoch from the seed.
      key = jax.random.fold_in(jax.random.fold_in(self.key, task), epoch)
      return self._epoch(
        task, *epoch_batches(key, indices, self.config.batch_size, pad_to=self.rows)
      )
    order, mask = self.fixed_order(indices, self.config.batch_size)
    pad = self.rows - order.shape[0]
    order = jnp.pad(order, ((0, pad), (0, 0)))
    mask = jnp.pad(mask, ((0, pad), (0, 0)))
    return self._epoch(task, order, mask)

  def task_data(self, task):
    indices = self.task_indices[task]
    c = self.classes_per_task
    classes = np.arange(self.num_classes) if self.joint else np.arange(task * c, (task + 1) * c)
    return TaskData(
      task, len(indices), classes, lambda b: self._epoch(task, *self.fixed_order(indices, b))
    )

  def test_set(self):
    return self.data.test_images, np.asarray(self.data.host.test_labels)

  def validation_set(self) -> tuple[jax.Array, np.ndarray]:
    """The held-out training images of every class on the device [N_v, 32, 32, C], labels [N_v]."""
    return self._valid

  def task_test_set(self, task):
    images, labels = self.test_set()
    rows = np.flatnonzero(labels // self.classes_per_task == task)
    return images[rows], labels[rows]

  @staticmethod
  def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """[num_classes] accuracy (%) on each class's samples (argmax over all logits)."""
    correct = np.argmax(logits, -1) == labels
    return [100.0 * float(np.mean(correct[labels == c])) for c in range(num_classes)]

  def evaluate(self, predict, batch_size, split: str = "test"):
    """Each task's accuracy (%) on the test split (``split="valid"``: the hold-out): one
    class a task, the class's; else the mean of its classes' (module docstring)."""
    images, labels = self.test_set() if split == "test" else self.validation_set()
    logits = evaluation.predict_logits(lambda x: predict(x, None), images, batch_size)
    class_il = self.per_class_accuracy(logits, labels, self.num_classes)
    c = self.classes_per_task
    if c == 1:  # Task-IL: the argmax over the sample's task's classes, one class: 100 %.
      return {"class_il": class_il, "task_il": [100.0] * self.num_classes}
    labels = np.asarray(labels)
    task_of = labels // c
    within = logits.reshape(len(labels), -1, c)[np.arange(len(labels)), task_of]
    task_il = self.per_class_accuracy(
      np.eye(self.num_classes)[task_of * c + np.argmax(within, -1)], labels, self.num_classes
    )
    per_task = lambda acc: [float(np.mean(acc[t * c : (t + 1) * c])) for t in range(self.num_tasks)]
    return {"class_il": per_task(class_il), "task_il": per_task(task_il)}


@register
class OneClassMNIST(OneClass):
  name = "dgm-mnist"
  dataset = "mnist"
  channels = 1
  holdout = 0.15
  train_rounding = False


@register
class OneClassSVHN(OneClass):
  name = "dgm-svhn"
  dataset = "svhn"


@register
class OneClassCIFAR10(OneClass):
  name = "dgm-cifar10"
  dataset = "cifar10"

  @classmethod
  def validate(cls, config):
    loaders = sorted(s for d, s in getattr(sources, "_LOADERS", {}) if d == "cifar10")
    if config.data.source not in loaders:
      raise ConfigError(
        f"dgm-cifar10: CIFAR-10 has no data.source={config.data.source!r}; use "
        f"--config.data.source= one of {', '.join(loaders) or '(none here)'}"
      )


@register
class ImageNet50(OneClass):
  """ImageNet-50 (docs/dgm.md#setting-and-protocol): 5 tasks of 10 classes, no hold-out,
  reshuffled every epoch."""

  name = "dgm-imagenet50"
  dataset = "imagenet50"
  num_tasks = 5
  classes_per_task = 10
  holdout = 0.0
  reshuffle = True
  generator = "resnet"

  @classmethod
  def validate(cls, config):
    loaders = sorted(s for d, s in getattr(sources, "_LOADERS", {}) if d == cls.dataset)
    source, path = config.data.source, config.data.path
    if source not in loaders:
      raise ConfigError(
        f"dgm-imagenet50: no ILSVRC-2012 loader for data.source={source!r}; "
        f"use --config.data.source= one of {', '.join(loaders) or '(none here)'}"
      )
    if source == "files" and not (path and os.path.isdir(path)):
      raise ConfigError(
        f"dgm-imagenet50: no ILSVRC-2012 folder at data.path={path!r}: set "
        "--config.data.path=/path/to/ILSVRC2012 (with train/<wnid>/ and val/)"
      )
