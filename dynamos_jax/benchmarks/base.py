"""What every benchmark gives the trainer: tasks, epochs of batches, evaluation.

A benchmark is built once per seed (its streams are drawn from the seed's
data key) over a dataset loaded once per run (``DeviceData``, shared by the
seeds). It plans the run as a list of *planned tasks* (one for a joint run or
a stream without boundaries), hands out each (task, epoch) as padded batch
indices into the device-resident training set, and scores a method's
predictions on its test set under its protocols.

A validation split (``data.validation`` = f > 0, docs/running.md#a-validation-split):
a benchmark that supports one (``no_validation`` empty) holds out, per class, the
first ``round(f n)`` of a seeded permutation of the class's n training samples
(``holdout_split``) and scores them after every task as it scores its test set
(``evaluate(..., split="valid")``).
"""

import abc
import dataclasses
from typing import Callable, ClassVar, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.data import sources
from dynamos_jax.data.streams import Batch, EpochData
from dynamos_jax.errors import require

# Kinds of benchmark (van de Ven & Tolias): one head over the classes of
# every task; one shared head over tasks of the same classes (e.g. input
# permutations); a head per task; a stream without task boundaries.
KINDS = ("class-incremental", "domain-incremental", "task-incremental", "general")

REGISTRY: dict[str, type["Benchmark"]] = {}

# fold_in constant of the hold-out permutations' key (the epochs use fold_in(task) of the
# seed's data key; permuted MNIST's permutations 2**31 - 2, MNIST-360's test draws 2**31 - 1).
HOLDOUT = 2**31 - 3


def register(cls: type["Benchmark"]) -> type["Benchmark"]:
  """Class decorator: makes ``cls`` available as ``--config.dataset=cls.name``."""
  assert cls.kind in KINDS, cls.kind
  if cls.name in REGISTRY:
    raise ValueError(f"two benchmarks are named {cls.name!r}")
  REGISTRY[cls.name] = cls
  return cls


def holdout_split(
  key: jax.Array, labels: np.ndarray, classes: Iterable[int], held: Callable[[int], int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Per class, a seeded permutation of its samples split into (train, valid) index arrays.

  Both DGM's one-class hold-out (``one_class``) and the ``data.validation`` split use it:
  the same key for a seed on every run, a resume included.

  Args:
    key: the seed's data key (folded with ``HOLDOUT``, then with the class).
    labels: int [N] the training labels.
    classes: the classes to split (each one's samples: ``labels == c``).
    held: n -> how many of a class's n samples are held out.

  Returns:
    train, valid: per class of ``classes``, int32 sample indices in the permuted order
    (valid: the first ``held(n)``, train: the rest).
  """
  key = jax.random.fold_in(key, HOLDOUT)
  train, valid = [], []
  for c in classes:
    idx = np.flatnonzero(labels == c).astype(np.int32)
    n = len(idx)
    perm = idx[np.asarray(jax.random.permutation(jax.random.fold_in(key, c), n))]
    valid.append(perm[: held(n)])
    train.append(perm[held(n) :])
  return train, valid


def validation_fraction(config) -> float:
  """``data.validation``: the share of each class's training samples held out (0: none).

  A config without the key (built by hand, or saved before it existed) holds none out.
  """
  data = config.get("data") or {}
  return float(data.get("validation", 0.0))


@dataclasses.dataclass(frozen=True)
class DeviceData:
  """A dataset in host memory and its arrays on the device (loaded once per run).

  host: the ``ArrayDataset``; train_images uint8 [N, H, W, 3], train_labels
  int32 [N] and test_images uint8 [N_test, H, W, 3] on the device.
  """

  host: sources.ArrayDataset
  train_images: jax.Array
  train_labels: jax.Array
  test_images: jax.Array

  @classmethod
  def load(cls, config, dataset: str) -> "DeviceData":
    host = sources.load_dataset(
      dataset, config.data.source, config.data.path or None, config.data.tfds_data_dir or None
    )
    return cls(
      host,
      jax.device_put(host.train_images),
      jax.device_put(host.train_labels),
      jax.device_put(host.test_images),
    )


@dataclasses.dataclass(frozen=True)
class TaskData:
  """What a task hook sees of a planned task.

  index: the planned task; size: its training samples; classes: its classes
  (None: a stream); batches(B): its training samples in file order as padded
  batches of B (an ``EpochData``: ``batches(B).batch(i)`` is batch i as the
  step sees it, transformed by the benchmark), for passes over the task.
  """

  index: int
  size: int
  classes: np.ndarray | None
  batches: Callable[[int], EpochData]


class Benchmark(abc.ABC):
  """A continual-learning benchmark.

  Class attributes:
    name: the config name, ``--config.dataset=NAME``.
    dataset: the dataset it streams (``data.sources``' name).
    kind: one of ``KINDS``.
    protocols: what ``evaluate`` returns: ``("class_il", "task_il")``
      (per-task accuracies, an accuracy matrix each) or ``("gcl",)`` (one
      accuracy at the end of the stream).
    single_pass: the stream is seen once (epochs must be 1).
    no_validation: why ``data.validation`` is refused on it ("": a validation split is
      supported: ``validation_indices``, ``validation_set`` and ``evaluate(...,
      split="valid")``).

  Attributes set by ``__init__``:
    num_classes: K, the width of the head.
    batches: batches in one epoch of each planned task.
    epochs: epochs of each planned task.
    seen_after: the tasks trained after each planned task (for the rows of
      the accuracy matrices).
    validation: ``data.validation``, the held-out share (0.0: no validation split).
  """

  name: ClassVar[str]
  dataset: ClassVar[str]
  kind: ClassVar[str]
  protocols: ClassVar[tuple[str, ...]] = ("class_il", "task_il")
  single_pass: ClassVar[bool] = False
  no_validation: ClassVar[str] = "has no validation split"

  num_classes: int
  batches: list[int]
  epochs: int
  seen_after: list[int]

  @classmethod
  def validate(cls, config) -> None:
    """Raises ``ConfigError`` for a config this benchmark cannot run."""
    del config

  @classmethod
  def check_validation(cls, config) -> float:
    """``data.validation``, checked (``ConfigError``: out of [0, 1), or refused here)."""
    f = validation_fraction(config)
    require(
      0.0 <= f < 1.0,
      f"data.validation must be in [0, 1) (got {f}): the share of each class's training "
      "samples held out for validation, e.g. --config.data.validation=0.1 (0: none)",
    )
    require(
      f == 0.0 or not cls.no_validation,
      f"data.validation={f}: {cls.name} {cls.no_validation}; drop --config.data.validation",
    )
    return f

  def __init__(self, config, data: DeviceData, key: jax.Array, joint: bool):
    """Args: the run's config; the loaded data; the seed's data key; whether the
    method trains on every task at once (one merged planned task)."""
    self.config = config
    self.data = data
    self.key = key
    self.joint = joint
    self.validation = self.check_validation(config)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.data.host.train_images.shape[1:])

  def example(self) -> Batch:
    """A batch of two blank images: the shapes a method initialises from."""
    return Batch(
      jnp.zeros((2, *self.image_shape), jnp.uint8),
      jnp.zeros((2,), jnp.int32),
      jnp.ones((2,), bool),
      0,
    )

  @abc.abstractmethod
  def epoch_data(self, task: int, epoch: int) -> EpochData:
    """The padded batches of one epoch of a planned task; a function of (seed, task, epoch)."""

  @abc.abstractmethod
  def task_data(self, task: int) -> TaskData:
    """A planned task's training samples, for the method's task hooks."""

  @staticmethod
  def fixed_order(indices: np.ndarray, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """``indices`` in their order as padded batches: order [rows, B], mask [rows, B]."""
    rows = -(-len(indices) // batch_size)
    order = np.zeros(rows * batch_size, np.int32)
    order[: len(indices)] = indices
    mask = np.arange(rows * batch_size) < len(indices)
    return (
      jnp.asarray(order.reshape(rows, batch_size)),
      jnp.asarray(mask.reshape(rows, batch_size)),
    )

  @abc.abstractmethod
  def test_set(self) -> tuple[jax.Array, np.ndarray]:
    """The evaluation images on the device [N, H, W, 3] and their labels [N] (host)."""

  def task_test_set(self, task: int) -> tuple[jax.Array, np.ndarray]:
    """Task ``task``'s evaluation images and labels (a stream: the whole test set)."""
    del task
    return self.test_set()

  def split_validation(
    self, task_indices: list[np.ndarray], image_of: Callable = lambda samples: samples
  ) -> list[np.ndarray]:
    """Each task's samples without its held-out share (``data.validation``).

    Args:
      task_indices: per task, its samples int32 [n_t] in file order (stream samples:
        permuted MNIST's are ``task * N + i``).
      image_of: a task's samples -> their training images' indices [n_t] (where the
        class is read; the held-out images of a class are the same for every task).

    Returns:
      Per task, the samples it trains on. Sets ``validation_indices``: per task, its
      held-out samples, int32 in file order, disjoint from the returned ones and
      together with them the task's samples (empty without a split, when
      ``task_indices`` comes back as it is).
    """
    self.validation_indices = [np.zeros(0, np.int32) for _ in task_indices]
    if not self.validation:
      return task_indices
    f, host = self.validation, self.data.host
    _, valid = holdout_split(
      self.key, np.asarray(host.train_labels), range(host.num_classes), lambda n: round(f * n)
    )
    held = np.zeros(len(host.train_labels), bool)
    held[np.concatenate(valid)] = True
    kept = []
    for t, samples in enumerate(task_indices):
      out = held[image_of(samples)]
      self.validation_indices[t] = samples[out]
      kept.append(samples[~out])
      require(
        len(kept[t]) > 0 and out.any(),
        f"data.validation={f} leaves task {t + 1} of {self.name} {len(kept[t])} training and "
        f"{int(out.sum())} validation samples: both need one at least; change "
        "--config.data.validation",
      )
    return kept

  @abc.abstractmethod
  def evaluate(self, predict: Callable, batch_size: int, split: str = "test") -> dict:
    """Scores ``predict(images, task) -> logits`` under each of ``protocols``.

    ``split``: "test", or "valid" for the held-out training samples (a benchmark
    with a validation split). Returns ``{protocol: [accuracy (%) per task]}`` or
    ``{"gcl": accuracy}``.
    """
