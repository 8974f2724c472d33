"""Everything static about one seed's run, built once from the config.

An ``Experiment`` ties the method, the benchmark (its streams drawn from the
seed) and the plan of chunks together, makes the initial ``TrainState`` and
evaluates a state. The dataset is loaded once and shared by the seeds.
"""

import jax
import jax.numpy as jnp
import ml_collections

from dynamos_jax import accuracy, benchmarks, methods
from dynamos_jax.chunks import plan_chunks
from dynamos_jax.errors import InputError
from dynamos_jax.state import TrainState


class Experiment:
  """One seed's method, benchmark and plan.

  Attributes:
    config, seed: what the run is.
    method: the ``methods.Method``.
    benchmark: the ``benchmarks.Benchmark`` of this seed.
    chunks: the plan, a list of ``chunks.Chunk``.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    seed: int | None = None,
    shared_with: "Experiment | None" = None,
  ):
    """Args: config; seed (default ``config.seed``); shared_with: an Experiment of
    the same config whose dataset (device copies) and jitted predictions this
    one shares."""
    self.config = config
    self.seed = config.seed if seed is None else seed
    # Named streams from the seed (docs/dynamos.md#random-keys): no key is used twice.
    self.init_key, self.data_key, self.train_key = jax.random.split(jax.random.key(self.seed), 3)
    method_class = methods.REGISTRY[config.method]
    benchmark_class = benchmarks.REGISTRY[config.dataset]
    data = (
      shared_with.benchmark.data
      if shared_with is not None
      else benchmarks.DeviceData.load(config, benchmark_class.dataset)
    )
    self.benchmark = benchmarks.build(config, data, self.data_key, joint=method_class.joint)
    self.method = method_class.from_config(config, self.benchmark)
    # The tasks of the plan (a joint run's one, a stream's segments).
    tasks, limit = len(self.benchmark.batches), config.train.max_tasks
    if limit > tasks:
      raise InputError(
        f"train.max_tasks={limit} but {config.dataset} has {tasks} tasks: "
        f"set at most {tasks} (0: every task)"
      )
    self.chunks = plan_chunks(
      self.benchmark.batches[: limit or None],  # train.max_tasks: the first tasks only
      self.benchmark.epochs,
      self.method.phases,
      config.train.chunk_size,
      config.train.max_steps_per_task,
    )
    self.predictors = (
      shared_with.predictors if shared_with is not None else accuracy.Predictors(self.method)
    )

  @property
  def gcl(self) -> bool:
    """Evaluated once, at the end of a stream without task boundaries."""
    return self.benchmark.protocols == ("gcl",)

  def initial_state(self) -> TrainState:
    # One compiled program: run op by op, a ResNet's initialisation compiles hundreds of
    # small kernels, seconds before the first step.
    init = jax.jit(lambda key, example: self.method.init(key, example, self.benchmark))
    learner = init(self.init_key, self.benchmark.example())
    return TrainState(step=jnp.zeros((), jnp.int32), key=self.train_key, learner=learner)

  def phase_after(self, next_chunk: int) -> str:
    """The phase the method is in once ``next_chunk`` chunks have run (0: before training)."""
    return self.chunks[max(next_chunk - 1, 0)].phase

  @property
  def validation(self) -> bool:
    """The benchmark holds out a validation split (``data.validation``), scored after every
    task beside the test set (docs/running.md#a-validation-split)."""
    return self.benchmark.validation > 0

  def evaluate(self, state: TrainState, phase: str, split: str = "test") -> dict:
    """The benchmark's scores of ``state`` (one seed's), predicting as in ``phase``, on the
    test set or (``split="valid"``) the validation split."""
    predict = self.predictors(state.learner, phase)
    if split == "test":  # A benchmark written before validation splits takes no ``split``.
      return self.benchmark.evaluate(predict, self.config.train.eval_batch_size)
    return self.benchmark.evaluate(predict, self.config.train.eval_batch_size, split=split)

  def task_data(self, task: int):
    return self.benchmark.task_data(task)
