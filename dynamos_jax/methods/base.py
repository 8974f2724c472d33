"""The method lifecycle: what every continual learner gives the trainer.

A method is a small static object built from the config (hyperparameters,
network definitions) plus a state pytree it owns (networks, optimiser states,
a buffer, whatever it carries across tasks). The trainer calls, in order:

  state = method.init(key, example, benchmark)
  for each task t:
    state = method.begin_task(state, task_t)          # host; may change shapes
    for each chunk of steps (phase declared by method.phases):
      state, metrics = method.step(state, batch, key, phase)   # pure, jitted
      at an epoch's end, unless method.epoch_end == "none":
        state = method.end_epoch(state, task_t, accuracy)      # host
    state = method.end_task(state, task_t)            # host; may change shapes
    (evaluation; then)
    arrays = method.after_task(state, task_t, benchmark)       # host; kept for analyze
    logits = method.predict(state, images, task, phase)        # evaluation
  record = method.results(state, benchmark)           # host; added to results.json
  and later, from a checkpoint: numbers = method.analyze(state, run)  # the analyze command

``step`` is traced once per phase and per state shape, run in chunks and
lifted over seeds by the trainer; the hooks run on the host for one seed's
state at a time and may run their own jitted passes over the task's data.
Hooks may change the shapes of the state's arrays, not its tree structure:
the trainer then recompiles the step once, and a checkpoint records the
shapes so that it restores at the task it was saved in.

``init``, ``step``, ``predict`` and ``from_config`` are required; every other
hook has a default that does nothing, so a method overrides only what it uses.
"""

import abc
from typing import Any, ClassVar, Literal

import jax
import ml_collections
import numpy as np

from dynamos_jax.benchmarks.base import KINDS
from dynamos_jax.data.streams import Batch

REGISTRY: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
  """Class decorator: makes ``cls`` available as ``--config.method=cls.name``."""
  if cls.name in REGISTRY:
    raise ValueError(f"two methods are named {cls.name!r}")
  REGISTRY[cls.name] = cls
  return cls


class Method(abc.ABC):
  """A continual learner (see the module docstring for the lifecycle).

  Class attributes:
    name: the config name, ``--config.method=NAME``.
    namespace: the config namespace holding the method's keys
      (``--config.NAMESPACE.KEY``); methods of one family may share one.
      None: the method has no keys of its own.
    joint: trains on every task's data at once (the benchmark merges the
      tasks into one and the run is evaluated once, at the end).
    kinds: the benchmark kinds (``benchmarks.KINDS``) the method can run on;
      a run on another kind is refused in one line.
  """

  name: ClassVar[str]
  namespace: ClassVar[str | None] = None
  joint: ClassVar[bool] = False
  kinds: ClassVar[tuple[str, ...]] = KINDS

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    """The keys of ``namespace`` with their defaults."""
    return ml_collections.ConfigDict()

  @classmethod
  def validate(cls, config: ml_collections.ConfigDict) -> None:
    """Raises ``ConfigError`` with a one-line hint for a bad value of this method's keys."""
    del config

  @classmethod
  @abc.abstractmethod
  def from_config(cls, config: ml_collections.ConfigDict, benchmark) -> "Method":
    """The method for a run of ``config`` on ``benchmark`` (a ``benchmarks.Benchmark``)."""

  def phases(self, task: int, batches: int) -> tuple[tuple[str, int | None], ...]:
    """The static phases of task ``task`` (``batches`` per epoch), in order.

    Each entry is ``(phase, steps)``; the last one's steps are None (the rest
    of the task). Each phase is its own compiled step.
    """
    del task, batches
    return (("main", None),)

  @abc.abstractmethod
  def init(self, key: jax.Array, example: Batch, benchmark) -> Any:
    """The whole initial state, from a key, an example batch and the benchmark."""

  @abc.abstractmethod
  def step(
    self, state: Any, batch: Batch, key: jax.Array, phase: str
  ) -> tuple[Any, dict[str, jax.Array]]:
    """One training step: pure, traced once per (phase, state shapes).

    Returns the new state and a dict of scalar metrics; ``loss`` and
    ``train_accuracy`` are expected (the trainer shows them and stops on a
    non-finite loss). ``key`` is this step's own key.
    """

  @abc.abstractmethod
  def predict(self, state: Any, images: jax.Array, task: jax.Array | None, phase: str) -> jax.Array:
    """Logits [N, K] of ``images`` [N, H, W, C] in evaluation mode.

    ``task``: the task the images come from, for methods with a head per
    task (None: class-incremental prediction over every class). ``phase``:
    the phase the method is in (a network still in a warm-up is evaluated as
    it trains). Jitted by the evaluator, static in ``phase``.
    """

  def begin_task(self, state: Any, task) -> Any:
    """Host hook before the first step of ``task`` (a ``benchmarks.TaskData``)."""
    del task
    return state

  # What ``end_epoch`` needs after each epoch of a task: "none" (it is not called),
  # "state" (it is called) or "accuracy" (it is called with the current task's accuracy
  # on ``epoch_split``, for which the trainer evaluates). A property where it depends on
  # the config.
  epoch_end: Literal["none", "state", "accuracy"] = "none"
  # The split of that accuracy: "test", or "valid", the validation split
  # (docs/running.md#a-validation-split), which the method's ``validate`` then requires.
  epoch_split: Literal["test", "valid"] = "test"

  def end_epoch(self, state: Any, task, accuracy: float | None) -> Any:
    """Host hook after each epoch of ``task`` (see ``epoch_end``), e.g. to keep the best
    epoch's weights. ``accuracy``: the task's accuracy (%) on ``epoch_split``, or None."""
    del task, accuracy
    return state

  def end_task(self, state: Any, task) -> Any:
    """Host hook after the last step of ``task``, before it is evaluated."""
    del task
    return state

  def after_task(self, state: Any, task, benchmark) -> dict[str, np.ndarray]:
    """What a user looks at after ``task`` (after its end hook and evaluation), as arrays;
    the trainer keeps them per seed and task for analyze (``task_arrays``:
    WORKDIR/after_task/seed_N/task_T.npz). Empty: nothing is kept."""
    del state, task, benchmark
    return {}

  def common_shape(self, states: list) -> list:
    """Several seeds' states after a hook, at one shape so that they share one program
    (a method whose hooks grow each seed by its own data, like DGM, pads them)."""
    return states

  def results(self, state: Any, benchmark) -> dict | None:
    """The method's own JSON-ready record for a seed's results.json (key ``method``) at
    the end of a run, e.g. DGM's best-validation report. None: nothing added."""
    del state, benchmark
    return None

  def training_marks(self) -> dict[str, float]:
    """Reference lines for the training curves of ``analyze``, by logged quantity (e.g.
    ``{"keep_ratio": 0.7}``: the agents' target keep ratio)."""
    return {}

  def analyze(self, state: Any, run) -> dict:
    """The method's own analyses of a trained ``state`` for the analyze command.

    ``run`` (an ``analyze.Run``) gives the seed's experiment, progress record, output
    folder, the command's options and ``run.add(title, path, caption)`` to show a
    figure. Returns the numbers for analysis.json (merged into its top level).
    """
    del state, run
    return {}
