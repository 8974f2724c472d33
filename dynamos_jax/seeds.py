"""The seeds of a run and how their states are laid out (the multi-seed layout).

One seed (``config.seeds`` empty): the plain TrainState of ``config.seed``.
Several: every seed's state stacked along a leading axis, the step lifted by
``parallel.over_seeds`` and the seed axis sharded over the devices; host
hooks and evaluation see one seed's state at a time.
"""

import os

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np

from dynamos_jax import accuracy as evaluation
from dynamos_jax import config as config_lib
from dynamos_jax import parallel
from dynamos_jax import sweep as sweep_lib
from dynamos_jax.chunks import ChunkRunner, make_train_step, unaliased
from dynamos_jax.data.streams import EpochData
from dynamos_jax.errors import ConfigError, InputError
from dynamos_jax.experiment import Experiment
from dynamos_jax.live import LiveMetrics
from dynamos_jax.methods import Method
from dynamos_jax.methods.dynamos import two_pass
from dynamos_jax.state import TrainState


class Seeds:
  """The run's members: their Experiments, the mesh and the stacked layout.

  Without a sweep the members are the seeds; with one (sweep.py), every
  setting's seeds, setting-major: ``seeds[i]`` and ``settings[i]`` are member
  i's seed and ``{key: value}``.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.sweep = sweep_lib.validate(config)
    run_seeds = config_lib.run_seeds(config)
    grid = self.sweep.settings if self.sweep else ({},)
    self.settings = [setting for setting in grid for _ in run_seeds]
    self.seeds = [seed for _ in grid for seed in run_seeds]
    self.multi = bool(str(config.seeds).strip()) or self.sweep is not None
    self.exps, predictors, first = [], {}, None
    for seed, setting in zip(self.seeds, self.settings):
      exp = Experiment(sweep_lib.setting_config(config, setting), seed, shared_with=first)
      if first is None:
        first = exp
        if self.sweep:
          sweep_lib.check_read(type(exp.method), config, self.sweep, exp.benchmark)
      # Prediction may read a swept value (a temperature): each setting its own jits.
      name = tuple(setting.items())
      if name not in predictors:
        predictors[name] = exp.predictors if exp is first else evaluation.Predictors(exp.method)
      exp.predictors = predictors[name]
      self.exps.append(exp)
    if any(e.chunks != first.chunks for e in self.exps):
      raise InputError(
        "the members' plans differ (stream lengths or phases), so they cannot "
        "share one program; run them one at a time (--config.seed=N)"
      )
    self.config = config
    unrolled_sweep = (
      self.sweep is not None and parallel.resolve_strategy(config.train.seed_strategy) == "unroll"
    )
    if unrolled_sweep and config.train.seed_devices > 1:
      # One sharded program runs on every device, so each device's members would
      # need their constants picked by the device's index (a branch per device),
      # which rounds differently from a setting alone (measured): refused.
      raise ConfigError(
        "an unrolled sweep cannot be sharded over devices (each member's "
        "constants would need a branch per device, which rounds differently "
        "from the setting alone): set --config.train.seed_devices=1, or "
        "--config.train.seed_strategy=vmap"
      )
    # An unrolled sweep runs on one device (seed_devices 0 or 1).
    self.mesh = (
      parallel.seed_mesh(len(self.seeds), config.train.seed_devices)
      if self.multi and not unrolled_sweep
      else None
    )
    data = first.benchmark.data
    # The labels the benchmark's batches carry: the dataset's, or a benchmark's own
    # (``train_labels``: a task-incremental split's are within the task).
    labels = getattr(first.benchmark, "train_labels", data.train_labels)
    # One seed with train.parallel_passes: its state and data replicated on the two devices
    # of the passes once, not copied there from device 0 at every step.
    self.replicas = (
      two_pass.pass_mesh()
      if config.train.get("parallel_passes", False) and not self.multi
      else None
    )
    self.shared = parallel.place((data.train_images, labels), self.mesh or self.replicas, P())

  @property
  def chunks(self):
    return self.exps[0].chunks

  def name(self, i: int) -> str:
    """Member i as the progress lines and errors name it: ``seed 2`` or ``SETTING seed 2``."""
    setting = f"{self.sweep.label(self.settings[i])} " if self.sweep else ""
    return f"{setting}seed {self.seeds[i]}"

  def directory(self, workdir: str, i: int) -> str:
    """Where member i's own files go: the run's directory, or its setting's folder."""
    if self.sweep is None:
      return workdir
    return os.path.join(workdir, sweep_lib.DIRECTORY, self.sweep.label(self.settings[i]))

  def directories(self, workdir: str) -> list[tuple[str, list[int]]]:
    """``(directory, its seeds)`` of each folder of member files (one without a sweep)."""
    run_seeds = config_lib.run_seeds(self.config)
    if self.sweep is None:
      return [(workdir, run_seeds)]
    return [
      (os.path.join(workdir, sweep_lib.DIRECTORY, label), run_seeds) for label in self.sweep.labels
    ]

  def live_metrics(self, workdir: str, resume_step: int, enabled: bool):
    """The members' live streams: WORKDIR/live/seed_N, or each setting's folder's."""
    if self.sweep is None:
      return LiveMetrics(workdir, self.seeds, resume_step, enabled)
    return sweep_lib.SweepLive(
      workdir, self.sweep, config_lib.run_seeds(self.config), resume_step, enabled
    )

  def initial_state(self) -> TrainState:
    if not self.multi:
      return self.place(unaliased(self.exps[0].initial_state()))
    states = [e.initial_state() for e in self.exps]
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(s)) for s in states}
    if len(shapes) > 1:
      raise InputError(
        "the members' states have different shapes, so they cannot share one "
        "program; sweep only keys that keep the shapes"
      )
    return self.place(parallel.stack(states))

  def place(self, state: TrainState) -> TrainState:
    """The state where the step runs: split by seed, replicated for the two passes, or as is."""
    if self.multi:
      return parallel.place(state, self.mesh, P(parallel.AXIS))
    return parallel.place(state, self.replicas, P())

  def make_runners(self) -> dict[str, ChunkRunner]:
    """A chunk runner per phase of the plan (the step lifted over the members)."""
    exp = self.exps[0]
    phases = dict.fromkeys(c.phase for c in exp.chunks)
    return {
      phase: ChunkRunner(
        self._step(phase), self.config.train.chunk_strategy, self.config.train.chunk_size
      )
      for phase in phases
    }

  def _step(self, phase: str):
    """The phase's step of all members: one seed's, lifted over the seeds; a sweep's
    per-member steps (unroll) or its step with traced hyperparameters (vmap)."""
    exp = self.exps[0]
    strategy = parallel.resolve_strategy(self.config.train.seed_strategy)
    if not self.multi:
      return make_train_step(exp.method, phase)
    if self.sweep is None:
      return parallel.over_seeds(make_train_step(exp.method, phase), strategy, self.mesh)
    if strategy == "unroll":
      return parallel.over_seeds(
        [make_train_step(e.method, phase) for e in self.exps], strategy, self.mesh
      )
    varying = sweep_lib.varying_fields([e.method for e in self.exps])
    values = {".".join(path): jnp.asarray(v, jnp.float32) for path, v in varying.items()}

    def make_step(mine):
      method = sweep_lib.with_values(
        exp.method, {tuple(name.split(".")): v for name, v in mine.items()}
      )
      one = make_train_step(method, phase)

      def step(state, data, position):
        try:
          return one(state, data, position)
        except jax.errors.ConcretizationTypeError:
          # The method branches in Python on a swept value: it needs its constants.
          raise ConfigError(
            f"sweep: {exp.method.name} uses {', '.join(values)} in Python "
            "control flow, so the sweep cannot be vmapped; use "
            "--config.train.seed_strategy=unroll"
          ) from None

      return step

    return parallel.over_seeds(None, strategy, self.mesh, traced=(make_step, values))

  def epoch_data(self, task: int, epoch: int) -> EpochData:
    if not self.multi:
      data = self.exps[0].benchmark.epoch_data(task, epoch)
      if self.replicas is None:
        return data
      images, labels = self.shared
      return parallel.place(data.replace(images=images, labels=labels), self.replicas, P())
    datas = [e.benchmark.epoch_data(task, epoch) for e in self.exps]
    first = datas[0]
    per_seed = parallel.place(
      parallel.stack([{n: getattr(d, n) for n in first.per_seed_fields()} for d in datas]),
      self.mesh,
      P(parallel.AXIS),
    )
    images, labels = self.shared
    return first.replace(
      images=images, labels=labels, task=parallel.place(first.task, self.mesh, P()), **per_seed
    )

  def state_of(self, state: TrainState, i: int) -> TrainState:
    """Seed i's state, on the host (for evaluation and hooks on any device)."""
    if not self.multi:
      return state
    if not all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(state.learner)):
      # Other hosts hold some seeds: every process gathers the whole state.
      return parallel.index(parallel.to_host(state), i)
    one = parallel.index(state, i)
    return one.replace(learner=jax.device_get(one.learner))

  def run_hook(self, state: TrainState, hook: str, task: int) -> TrainState:
    """Calls the method's ``begin_task`` or ``end_task`` on every seed's state.

    Skipped for a method that does not override the hook (nothing to do).
    """
    exp = self.exps[0]
    if getattr(type(exp.method), hook) is getattr(Method, hook):
      return state
    if not self.multi:
      learner = getattr(exp.method, hook)(state.learner, exp.task_data(task))
      return self.place(unaliased(state.replace(learner=learner)))
    learners = [
      getattr(e.method, hook)(self.state_of(state, i).learner, e.task_data(task))
      for i, e in enumerate(self.exps)
    ]
    # A method whose hooks grow each seed by its own data (DGM) pads them to one shape.
    learners = exp.method.common_shape(learners)
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(l)) for l in learners}
    if len(shapes) > 1:
      raise InputError(
        f"{exp.method.name}.{hook} gave the seeds states of different shapes, "
        "so they cannot share one program; run the seeds one at a time"
      )
    return self.place(state.replace(learner=parallel.stack(learners)))

  def end_epoch(self, state: TrainState, chunk) -> TrainState:
    """The method's ``end_epoch`` on every seed, with the seed's accuracy on the task if the
    method asks for it (``Method.epoch_end``, on ``Method.epoch_split``)."""
    exp = self.exps[0]
    if exp.method.epoch_end == "none":
      return state
    learners = []
    for i, e in enumerate(self.exps):
      one = self.state_of(state, i)
      accuracy = self._task_accuracy(e, one, chunk) if e.method.epoch_end == "accuracy" else None
      learners.append(e.method.end_epoch(one.learner, e.task_data(chunk.task), accuracy))
    if not self.multi:
      return self.place(unaliased(state.replace(learner=learners[0])))
    return self.place(state.replace(learner=parallel.stack(learners)))

  @staticmethod
  def _task_accuracy(exp: Experiment, state: TrainState, chunk) -> float:
    """The planned task's accuracy (%) on the method's ``epoch_split`` (the test set or the
    validation split): one task's, or every task's in a joint run."""
    scores = exp.evaluate(state, chunk.phase, split=exp.method.epoch_split)
    seen = exp.benchmark.seen_after
    first = seen[chunk.task - 1] if chunk.task else 0
    # A task-incremental benchmark selects on the task's own head (task-IL).
    protocol = "task_il" if exp.benchmark.kind == "task-incremental" else "class_il"
    return (
      float(np.mean(scores[protocol][first : seen[chunk.task]]))
      if protocol in scores
      else scores["gcl"]
    )

  def split(self, metrics: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per-seed metrics from the runner's [steps] or [steps, S] arrays."""
    if not self.multi:
      return [metrics]
    return [{k: v[:, i] for k, v in metrics.items()} for i in range(len(self.seeds))]
