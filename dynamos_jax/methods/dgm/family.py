"""DGM's generator families: what depends on G's family, behind one small protocol.

``methods/dgm/dgm.py`` runs the algorithm and ``summary`` reads a state; both
ask the method's family (``DGM.family``, picked by ``dgm.generator``) for
what depends on G, and only for the members of ``GeneratorFamily``:

- ``dcgan.DCGANFamily`` (``dgm.generator=dcgan``): one class a task, the
  DCGAN G of ``generator_dcgan`` (three masked transposed convolutions, a
  head per task) and D; MNIST, SVHN, CIFAR-10.
- ``imagenet.ResNetFamily`` (``dgm.generator=resnet``): ten classes a task,
  the ResNet G of ``generator_resnet`` (ten masked weights, a head per
  class) and the ResNet-18 D; ImageNet-50.

A family holds the ``DGM`` method (its static config) and nothing else, so
every member is a pure function of the method and its arguments: the step's
pieces are traced inside the step (static Python dispatch at trace time),
the lifecycle and summary members run on the host.

Shapes: B a batch's rows, L the masked weights (``LAYERS``), T tasks, K
classes, C image channels, nz the noise's width; images are 32 x 32.
"""

import abc
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import numpy as np

from dynamos_jax.methods.dgm.state import DGMState


@dataclasses.dataclass(frozen=True)
class GeneratorFamily(abc.ABC):
  """What a G family gives DGM's algorithm and summaries (the module docstring)."""

  method: Any  # the DGM method (methods/dgm/dgm.py): static config only

  # The masked weights' names in the state's order (L of them; ``arrays``' "layers").
  LAYERS: ClassVar[tuple[str, ...]]

  # --- the algorithm: lifecycle (host) -------------------------------------------------------

  @abc.abstractmethod
  def discriminator(self) -> nn.Module:
    """D's Linen module: x [N, 32, 32, C] in [-1, 1] -> (critic [N], aux logits [N, K])."""

  @abc.abstractmethod
  def init_d(self, key: jax.Array) -> dict:
    """D's fresh variables {params, batch_stats}."""

  @abc.abstractmethod
  def init(self, key: jax.Array) -> DGMState:
    """The method's fresh state (a ``DGMState``, or a subclass with the family's fields)."""

  @abc.abstractmethod
  def new_heads(self, g: dict, key: jax.Array, t: int, counts: np.ndarray) -> dict:
    """G's params ``g`` with task t's head(s) drawn from ``key`` (at the task's start);
    ``counts`` int [L'] task t's active counts, on the host (the heads' shapes)."""

  @abc.abstractmethod
  def end_task(self, state, task):
    """Task ``task.index``'s end: its masks binarised at s_max and cumulated, its embeddings
    kept, G grown for the next task (docs/dgm.md#cumulative-masks-and-gradient-conditioning,
    docs/dgm.md#growth-after-each-task); the new state."""

  @abc.abstractmethod
  def common_shape(self, states: list) -> list:
    """Several seeds' states (each grown by its own masks) padded to their widest widths."""

  # --- the algorithm: the step's pieces (traced) ---------------------------------------------

  @abc.abstractmethod
  def exists(self, g: dict, state, t) -> tuple[jax.Array, ...]:
    """L float 0/1 arrays (the embeddings' shapes, or broadcastable to them): the entries
    task t's masks cover while it trains."""

  @abc.abstractmethod
  def noise(self, key: jax.Array, labels: jax.Array, t) -> jax.Array:
    """z float32 [B, nz] for a real batch of task t with labels int32 [B], its one-hot
    prefix (``onehot_width`` dims) set to each row's class."""

  @abc.abstractmethod
  def forward(
    self, g: dict, stats: dict, z: jax.Array, t, masks, counts, labels, train: bool, valid
  ) -> tuple[jax.Array, dict]:
    """(images [B, 32, 32, C] in [-1, 1], G's BN statistics) of task t from z [B, nz] with
    L ``masks``, active ``counts`` [L'] and labels int32 [B] (each row's class); ``train``:
    training-mode BN over the rows where ``valid`` bool [B] (None: all)."""

  @abc.abstractmethod
  def conditioners(self, g: dict, state, t) -> tuple[jax.Array, ...]:
    """L gradient factors shaped as G's masked weights ``g["w"]``: 1 - M^{<t} on the
    entries that exist, 0 on reserved (frozen) and absent ones."""

  @abc.abstractmethod
  def reg_weight(self, state, t) -> jax.Array:
    """float32 [] lambda_RU times the growth's size ratio (now over the start;
    docs/dgm.md#sparsity-regulariser)."""

  @abc.abstractmethod
  def replay(self, state, position, b: int, t: int) -> tuple:
    """The past tasks' images at batch ``position`` of task t (t > 0): (images [t, b, 32, 32,
    C], labels int32 [t, b], valid bool [t, b]); labels and valid None where past task u's
    rows are all class u and exist where the real rows do (``classifier_steps``)."""

  # --- what a user reads off a state (``summary``; host) -------------------------------------

  @abc.abstractmethod
  def onehot_width(self) -> int:
    """The noise's one-hot prefix width (0: none)."""

  @abc.abstractmethod
  def generate(
    self, state, z: jax.Array, label: int, finished: bool = True, binary: bool | None = None
  ) -> jax.Array:
    """Images [N, 32, 32, C] in [-1, 1] of class ``label`` from z [N, nz] (its one-hot
    prefix written): eval BN, s = S, its task's BN, counts, head and masks (the kept
    embedding once ``finished``, else the one being trained); ``binary``: the masks
    binarised (None: as the method's replay)."""

  @abc.abstractmethod
  def samples(self, state, classes: int, n: int, base: jax.Array) -> np.ndarray:
    """uint8 [classes, n, 32, 32, C] of classes 0..classes-1 from noise ``base`` [n, nz] (its
    one-hot prefix set per class), as ``generate``'s; pixels round(127.5 (x + 1))."""

  @abc.abstractmethod
  def task_exists(self, state, tasks: int) -> list[tuple]:
    """Per finished task (``tasks`` of them), L arrays (the embeddings' shapes or
    broadcastable to them): 1 on the entries its mask covered while it trained."""

  @abc.abstractmethod
  def masked_params(self, state, tasks: int) -> list[int]:
    """[tasks + 1] masked weights each task trained on, the last after the growth that
    followed task tasks - 1."""

  @abc.abstractmethod
  def private_params(self, counts) -> int:
    """A task's own parameters at its active ``counts``: its BN's and its head(s)'."""

  @abc.abstractmethod
  def row(self, state, t: int, l: int) -> dict:
    """``summary.mask_statistics``' extra column of task t's masked weight l."""

  @abc.abstractmethod
  def arrays(self, state, finished: int) -> dict:
    """``summary.arrays``' dict after ``finished`` tasks (its docstring lists the keys)."""
