"""What every benchmark gives the trainer: tasks, epochs of batches, evaluation.

A benchmark is built once per seed (its streams are drawn from the seed's
data key) over a dataset loaded once per run (``DeviceData``, shared by the
seeds). It plans the run as a list of *planned tasks* (one for a joint run or
a stream without boundaries), hands out each (task, epoch) as padded batch
indices into the device-resident training set, and scores a method's
predictions on its test set under its protocols.
"""

import abc
import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.data import sources
from dynamos_jax.data.streams import Batch, EpochData

# Kinds of benchmark (van de Ven & Tolias): one head over the classes of
# every task; one shared head over tasks of the same classes (e.g. input
# permutations); a head per task; a stream without task boundaries.
KINDS = ("class-incremental", "domain-incremental", "task-incremental", "general")

REGISTRY: dict[str, type["Benchmark"]] = {}


def register(cls: type["Benchmark"]) -> type["Benchmark"]:
  """Class decorator: makes ``cls`` available as ``--config.dataset=cls.name``."""
  assert cls.kind in KINDS, cls.kind
  if cls.name in REGISTRY:
    raise ValueError(f"two benchmarks are named {cls.name!r}")
  REGISTRY[cls.name] = cls
  return cls


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

  Attributes set by ``__init__``:
    num_classes: K, the width of the head.
    batches: batches in one epoch of each planned task.
    epochs: epochs of each planned task.
    seen_after: the tasks trained after each planned task (for the rows of
      the accuracy matrices).
  """

  name: ClassVar[str]
  dataset: ClassVar[str]
  kind: ClassVar[str]
  protocols: ClassVar[tuple[str, ...]] = ("class_il", "task_il")
  single_pass: ClassVar[bool] = False

  num_classes: int
  batches: list[int]
  epochs: int
  seen_after: list[int]

  @classmethod
  def validate(cls, config) -> None:
    """Raises ``ConfigError`` for a config this benchmark cannot run."""
    del config

  def __init__(self, config, data: DeviceData, key: jax.Array, joint: bool):
    """Args: the run's config; the loaded data; the seed's data key; whether the
    method trains on every task at once (one merged planned task)."""
    self.config = config
    self.data = data
    self.key = key
    self.joint = joint

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

  @abc.abstractmethod
  def evaluate(self, predict: Callable, batch_size: int) -> dict:
    """Scores ``predict(images, task) -> logits`` under each of ``protocols``.

    Returns ``{protocol: [accuracy (%) per task]}`` or ``{"gcl": accuracy}``.
    """
