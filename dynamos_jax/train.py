"""Training: the state pytree, the jitted step, the chunk runner and the task loop.

Data flows one way: config -> dataset -> stream of padded batches (indices
into the device-resident training set) -> jitted steps, run in chunks ->
evaluation after each task -> results.json.
"""

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from dynamos_jax import buffer as buffer_lib
from dynamos_jax.checkpoint import Checkpointer, config_differences
from dynamos_jax import evaluation
from dynamos_jax import metrics as metrics_lib
from dynamos_jax import methods
from dynamos_jax import parallel
from dynamos_jax.data import mnist360
from dynamos_jax.data import sources
from dynamos_jax.data.streams import ClassIncremental, epoch_batches, num_batches
from dynamos_jax.errors import DynamosError
from dynamos_jax.models.resnet import ResNet


# The dataset each benchmark streams.
BENCHMARK_DATASET = {"seq-mnist": "mnist", "seq-svhn": "svhn", "mnist-360": "mnist"}
# General continual learning: one stream without task boundaries, one accuracy at the end.
GCL_BENCHMARKS = ("mnist-360",)
# fold_in constant of the MNIST-360 test draws' key (the train stream uses fold_in 0).
_TEST_STREAM = 2**31 - 1


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  step: int32 [] steps taken (warm-up included); params, batch_stats: the
  network's variables; opt_state: optax state; buffer: the replay reservoir;
  key: the train stream's PRNG key (folded with ``step`` each step).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  buffer: buffer_lib.BufferState
  key: jax.Array


@flax.struct.dataclass
class EpochData:
  """One epoch of the stream on the device.

  images: uint8 [N, H, W, 3] and labels: int32 [N], the whole training set;
  order: int32 [rows, B] sample indices of each batch; mask: bool [rows, B];
  rotation: int32 [rows, B, 6] PIL's nearest-neighbour map rotating each
  sample (MNIST-360), or None.
  """
  images: jax.Array
  labels: jax.Array
  order: jax.Array
  mask: jax.Array
  rotation: jax.Array | None = None


def make_model(config: ml_collections.ConfigDict, method: methods.Method,
               num_classes: int) -> ResNet:
  return ResNet(num_classes=num_classes, gated=method.gated, nf=config.model.nf,
                temperature=config.tau, reduction=config.model.mlp_reduction)


def create_train_state(model: ResNet, method: methods.Method, tx: optax.GradientTransformation,
                       image_shape: tuple[int, int, int], buffer_size: int,
                       init_key: jax.Array, train_key: jax.Array) -> TrainState:
  """Initial state: PyTorch-style initialisation, empty buffer, the train key."""
  init_key, gates_key = jax.random.split(init_key)
  dummy = jnp.zeros((2, *image_shape), jnp.uint8)
  variables = model.init({"params": init_key, "gates": gates_key}, dummy,
                         "sample" if method.gated else "off", True)
  attention_dim = 4 * 2 * model.nf if method.gated else 0
  buffer = buffer_lib.init(buffer_size if method.uses_buffer else 0, image_shape,
                           model.num_classes, attention_dim)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"],
                    opt_state=tx.init(variables["params"]), buffer=buffer, key=train_key)


def make_train_step(model: ResNet, method: methods.Method, tx: optax.GradientTransformation, *,
                    phase: str, minibatch_size: int, only_valid: bool) -> Callable:
  """The pure step ``(state, data, position) -> (state, metrics)``.

  ``phase`` is static: ``warmup`` trains the agent-free network with
  cross-entropy and leaves the buffer alone (spec 7); ``main`` runs the method.
  ``position`` is the batch row of ``data`` to train on.
  """
  use_buffer = phase == "main" and method.uses_buffer

  def step(state: TrainState, data: EpochData, position: jax.Array):
    index, mask = data.order[position], data.mask[position]
    images = data.images[index]
    if data.rotation is not None:  # MNIST-360: the buffer stores the rotated image too.
      images = mnist360.rotate_with_params(images, data.rotation[position])
    batch = methods.Batch(images, data.labels[index], mask)
    key = jax.random.fold_in(state.key, state.step)
    gates_key, replay_key, reservoir_key = jax.random.split(key, 3)

    if phase == "warmup":
      loss_fn = lambda p: methods.base.plain_cross_entropy(model, p, state.batch_stats, batch)
    else:
      # A single draw takes the replay key as it is; several (DER++) split it.
      keys = ([replay_key] if method.replay_draws == 1
              else list(jax.random.split(replay_key, method.replay_draws)))
      replays = tuple(buffer_lib.sample(state.buffer, k, minibatch_size, only_valid=only_valid)
                      for k in keys) if use_buffer else ()
      loss_fn = lambda p: method.loss(model, p, state.batch_stats, batch, replays, gates_key)
    grads, out = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    new_buffer = state.buffer
    if use_buffer:
      # Insert after the update, with the logits and attention of the
      # pre-update forward (spec 6.1). Add-if-correct methods write only
      # correct predictions; plain reservoirs (ER, DER++) write every sample.
      correct = ((jnp.argmax(out.logits, -1) == batch.labels) & mask
                 if method.insert_if_correct else mask)
      draws = buffer_lib.reservoir_draws(reservoir_key, state.buffer, mask, correct,
                                         only_valid=only_valid)
      new_buffer = buffer_lib.insert(state.buffer, draws, batch.images, batch.labels,
                                     jax.lax.stop_gradient(out.logits),
                                     jax.lax.stop_gradient(out.attention), mask, correct,
                                     only_valid=only_valid)
    metrics = dict(out.metrics, grad_norm=optax.tree.norm(grads))
    if method.uses_buffer:
      metrics["buffer_seen"] = new_buffer.num_seen
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=out.batch_stats,
                              opt_state=opt_state, buffer=new_buffer)
    return new_state, metrics

  return step


class ChunkRunner:
  """Runs steps ``[start, stop)`` of an epoch; the host syncs only between chunks.

  Two strategies (design.md section 4): ``loop`` calls one jitted, donated step
  from Python (fast on XLA:CPU, where convolution gradients inside a rolled
  loop take a slow path); ``scan`` runs a whole chunk in one ``lax.scan``
  (fewer dispatches on GPU/TPU). Steps past ``stop`` in the last scanned chunk
  are skipped with ``lax.cond``, so every chunk has one shape.
  """

  def __init__(self, step: Callable, strategy: str, chunk_size: int):
    if strategy == "auto":
      strategy = "loop" if jax.default_backend() == "cpu" else "scan"
    self.strategy = strategy
    self.chunk_size = chunk_size
    self.compile_seconds = 0.0
    self._step = step
    self._compiled = None
    if strategy == "loop":
      self._jitted = jax.jit(step, donate_argnums=0)
    else:
      self._jitted = jax.jit(self._scan_chunk, donate_argnums=0)

  def _scan_chunk(self, state, data, start, stop):
    zero_metrics = jax.tree.map(jnp.zeros_like,
                                jax.eval_shape(self._step, state, data, start)[1])

    def body(state, i):
      position = start + i
      return jax.lax.cond(position < stop, lambda s: self._step(s, data, position),
                          lambda s: (s, zero_metrics), state)

    return jax.lax.scan(body, state, jnp.arange(self.chunk_size))

  def _compile(self, *args):
    t0 = time.perf_counter()
    self._compiled = self._jitted.lower(*args).compile()
    self.compile_seconds += time.perf_counter() - t0

  def run(self, state: TrainState, data: EpochData, start: int, stop: int):
    """Returns the new state and the metrics of the steps run, [steps] per key (host)."""
    if self.strategy == "loop":
      history = []
      for position in range(start, stop):
        args = (state, data, np.int32(position))
        if self._compiled is None:
          self._compile(*args)
        state, metrics = self._compiled(*args)
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(history))
    args = (state, data, np.int32(start), np.int32(stop))
    if self._compiled is None:
      self._compile(*args)
    state, metrics = self._compiled(*args)
    return state, jax.tree.map(lambda x: np.asarray(x)[:stop - start], metrics)


def warmup_steps(config: ml_collections.ConfigDict, first_task_batches: int) -> int:
  """Steps of agent-free warm-up at the start of task 1 (spec 7; config.warmup)."""
  if config.warmup.iterations:
    return int(config.warmup.iterations)
  return int(config.warmup.epochs) * first_task_batches


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Steps ``[start, stop)`` of one epoch of one task, all in one phase."""
  task: int
  epoch: int
  start: int
  stop: int
  phase: str  # "warmup" or "main"
  ends_task: bool  # the task is evaluated after this chunk


def plan_chunks(batches_per_task: list[int], epochs: int, warmup: int, chunk_size: int,
                max_steps_per_task: int = 0) -> list[Chunk]:
  """The whole run as a list of chunks: the unit of host work, logging and resumption.

  Args:
    batches_per_task: batches in one epoch of each task.
    epochs: epochs per task.
    warmup: warm-up steps at the start of task 1 (0: none).
    chunk_size: most steps in a chunk.
    max_steps_per_task: stop each task after this many steps (0: no limit).
  """
  chunks = []
  for task, batches in enumerate(batches_per_task):
    budget = batches * epochs
    if max_steps_per_task:
      budget = min(budget, max_steps_per_task)
    done = 0
    for epoch in range(epochs):
      position = 0
      while position < batches and done < budget:
        # Cut at chunk size, the task's step budget and the warm-up boundary.
        stop = min(batches, position + chunk_size, position + budget - done)
        warm = task == 0 and done < warmup
        if warm:
          stop = min(stop, position + warmup - done)
        done += stop - position
        chunks.append(Chunk(task, epoch, position, stop, "warmup" if warm else "main",
                            ends_task=done == budget))
        position = stop
  return chunks


def format_table(matrix: list[list[float | None]], title: str,
                 labels: list[str | None] | None = None) -> str:
  """An accuracy matrix as text: a row per evaluation, '-' for unseen tasks, the mean."""
  tasks = len(matrix[0])
  lines = [title, "after task | " + " ".join(f"  T{j + 1:<4}" for j in range(tasks)) + " |  mean"]
  for i, row in enumerate(matrix):
    seen = [v for v in row if v is not None]
    cells = " ".join(f"{v:7.2f}" if v is not None else "      -" for v in row)
    name = (labels[i] if labels and labels[i] else None) or ("untrained" if i == 0 else str(i))
    lines.append(f"{name:>10} | {cells} | {np.mean(seen):6.2f}")
  return "\n".join(lines)


def accuracy_results(progress: dict) -> dict:
  """The accuracy part of results.json from the run's progress record.

  Task-incremental runs: ``class_il`` and ``task_il`` (matrix, before,
  final average) and their ``metrics``; general continual learning:
  ``gcl`` and ``metrics.gcl``, both ``{"accuracy": float}``.
  """
  if "gcl" in progress:
    return {"gcl": {"accuracy": progress["gcl"]},
            "metrics": {"gcl": {"accuracy": progress["gcl"]}}}
  out = {p: {"matrix": progress[p], "before": progress["before"][p],
             "final_average": metrics_lib.final_average(progress[p])}
         for p in ("class_il", "task_il")}
  out["metrics"] = {p: metrics_lib.summarize(progress[p], progress["before"][p])
                    for p in ("class_il", "task_il")}
  return out


def format_results(results: dict) -> str:
  """The end-of-run summary: accuracy tables and metrics, or the GCL accuracy.

  A multi-seed run: each seed's headline figures, then their mean and std.
  """
  if "runs" in results:
    lines = []
    for run in results["runs"]:
      cells = [f"{p} {run['metrics'][p].get('final_average', run['metrics'][p].get('accuracy')):.2f}"
               for p in run["metrics"]]
      lines.append(f"seed {run['seed']}: " + ", ".join(cells))
    for protocol, values in results["summary"].items():
      lines.append(f"{protocol} over {len(results['runs'])} seeds: " + ", ".join(
          f"{name} {v['mean']:.2f} +- {v['std']:.2f}" for name, v in values.items()
          if v["mean"] is not None))
    return "\n".join(lines)
  if "gcl" in results:
    return f"GCL accuracy (all rotated test draws): {results['gcl']['accuracy']:.2f}%"
  return "\n".join([format_table(results["class_il"]["matrix"], "Class-IL accuracy (%)"),
                    format_table(results["task_il"]["matrix"], "Task-IL accuracy (%)"),
                    format_metrics(results["metrics"])])


def format_metrics(metrics: dict[str, dict[str, float | None]]) -> str:
  """The metrics of each protocol side by side; '-' where undefined (joint runs)."""
  names = {"final_average": "final average", "forgetting": "forgetting",
           "backward_transfer": "BWT", "forward_transfer": "FWT"}
  lines = [f"{'metric':>14} | {'class-IL':>8} | {'task-IL':>8}"]
  for key, name in names.items():
    cells = [metrics[p][key] for p in ("class_il", "task_il")]
    lines.append(f"{name:>14} | " + " | ".join("       -" if v is None else f"{v:8.2f}"
                                               for v in cells))
  return "\n".join(lines)


class Experiment:
  """Everything static about a run, built once from the config.

  Holds the method, the dataset (training and test images on the device),
  the task split, the model, the optimiser, the PRNG streams, the chunk plan
  and the jitted evaluation functions. The changing part lives in TrainState.
  """

  def __init__(self, config: ml_collections.ConfigDict, seed: int | None = None,
               data_from: "Experiment | None" = None):
    """Args: config; seed (default ``config.seed``); data_from: an Experiment of
    the same config whose dataset (and device copies) this one shares."""
    self.config = config
    self.seed = config.seed if seed is None else seed
    self.method = methods.get_method(config)
    self.gcl = config.dataset in GCL_BENCHMARKS
    self.stream = ClassIncremental(num_tasks=5, classes_per_task=2)
    self.tx = optax.sgd(config.lr)
    # Named streams from the seed (design.md section 3): no key is used twice.
    self.init_key, self.data_key, self.train_key = jax.random.split(
        jax.random.key(self.seed), 3)
    if data_from is None:
      self.dataset = sources.load_dataset(
          BENCHMARK_DATASET[config.dataset], config.data.source, config.data.path or None,
          config.data.tfds_data_dir or None)
      self.train_images = jax.device_put(self.dataset.train_images)
      self.train_labels = jax.device_put(self.dataset.train_labels)
      self.test_images = jax.device_put(self.dataset.test_images)
    else:
      self.dataset, self.train_images, self.train_labels, self.test_images = (
          data_from.dataset, data_from.train_images, data_from.train_labels,
          data_from.test_images)
    num_classes = mnist360.NUM_CLASSES if self.gcl else self.dataset.num_classes
    self.model = make_model(config, self.method, num_classes)
    if self.gcl:
      batches = self._init_gcl_stream()
    else:
      tasks = [self.stream.task_indices(self.dataset.train_labels, t)
               for t in range(self.stream.num_tasks)]
      if self.method.joint:
        # One task holding every task's samples; evaluated once, on all tasks.
        self.task_indices = [np.sort(np.concatenate(tasks))]
        self.seen_after = [self.stream.num_tasks]
      else:
        self.task_indices = tasks
        self.seen_after = list(range(1, self.stream.num_tasks + 1))
      batches = [num_batches(len(ix), config.batch_size) for ix in self.task_indices]
    self.rows = max(batches)
    # Only gated methods have a warm-up (spec 12: the baselines start right away).
    self.warmup = warmup_steps(config, batches[0]) if self.method.gated else 0
    self.chunks = plan_chunks(batches, 1 if self.gcl else config.epochs, self.warmup,
                              config.train.chunk_size, config.train.max_steps_per_task)
    self._predict = (data_from._predict if data_from is not None else
                     {mode: evaluation.make_predict(self.model, mode)
                      for mode in ("threshold", "off")})

  def _init_gcl_stream(self) -> list[int]:
    """MNIST-360 (spec 10.3): the single-pass training stream and the rotated test draws.

    Sets ``gcl_test``: the rotated test draws on the device, uint8 [N, H, W, 3],
    and their labels [N] (host). Returns the batches of the one "task" the
    stream is planned as.
    """
    config = self.config
    stream = mnist360.train_stream(jax.random.fold_in(self.data_key, 0),
                                   self.dataset.train_labels, config.batch_size)
    index, degrees, mask = stream.index, stream.degrees, stream.mask
    if self.method.joint:
      # The whole stream's items (rotations included), shuffled, in full batches.
      index, degrees = index[mask], degrees[mask]
      perm = np.asarray(jax.random.permutation(jax.random.fold_in(self.data_key, 1), len(index)))
      index, degrees, mask = mnist360.pad_batches(index[perm], degrees[perm],
                                                  batch_size=config.batch_size)
    h, w = self.dataset.train_images.shape[1:3]
    self._gcl_data = EpochData(self.train_images, self.train_labels, jnp.asarray(index),
                               jnp.asarray(mask),
                               jnp.asarray(mnist360.rotation_params(degrees, h, w)))
    test_index, test_degrees = mnist360.test_draws(
        jax.random.fold_in(self.data_key, _TEST_STREAM), self.dataset.test_labels,
        config.batch_size, shuffle=config.mnist360.shuffle_test)
    rotate = jax.jit(mnist360.rotate_with_params)
    params = mnist360.rotation_params(test_degrees, h, w)
    self.gcl_test = (
        jnp.concatenate([rotate(self.test_images[test_index[i:i + 4096]], params[i:i + 4096])
                         for i in range(0, len(test_index), 4096)]),
        self.dataset.test_labels[test_index])
    self.seen_after = [1]
    return [int(index.shape[0])]

  def gcl_accuracy(self, state: TrainState) -> float:
    """MNIST-360's accuracy (%): correct over all rotated test draws (sample-weighted)."""
    images, labels = self.gcl_test
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = evaluation.predict_logits(self._predict["threshold" if self.method.gated else "off"],
                                       variables, images, self.config.train.eval_batch_size)
    return mnist360.gcl_accuracy(np.argmax(logits, -1), labels)

  def initial_state(self) -> TrainState:
    return create_train_state(self.model, self.method, self.tx,
                              self.dataset.train_images.shape[1:], self.config.buffer_size,
                              self.init_key, self.train_key)

  def epoch_data(self, task: int, epoch: int) -> EpochData:
    """The padded, shuffled batches of one epoch; a function of (seed, task, epoch)."""
    if self.gcl:
      return self._gcl_data
    key = jax.random.fold_in(jax.random.fold_in(self.data_key, task), epoch)
    order, mask = epoch_batches(key, self.task_indices[task], self.config.batch_size,
                                pad_to=self.rows)
    return EpochData(self.train_images, self.train_labels, jnp.asarray(order),
                     jnp.asarray(mask))

  def make_runners(self, lift: Callable = lambda step: step) -> dict[str, ChunkRunner]:
    """A chunk runner per phase; ``lift`` maps the one-seed step (e.g. to several seeds)."""
    phases = ("warmup", "main") if self.warmup else ("main",)
    return {phase: ChunkRunner(
        lift(make_train_step(self.model, self.method, self.tx, phase=phase,
                             minibatch_size=self.config.minibatch_size,
                             only_valid=self.config.buffer.only_valid)),
        self.config.train.chunk_strategy, self.config.train.chunk_size) for phase in phases}

  def accuracies(self, state: TrainState, seen: int) -> tuple[list[float], list[float]]:
    """Class-IL and task-IL accuracy on every task, after ``seen`` tasks of training.

    ``seen == 0`` is the untrained model: when there is a warm-up it is
    evaluated without agents (the reference evaluates it with the warm-up
    flag set).
    """
    gated = self.method.gated and not (seen == 0 and self.warmup)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = evaluation.predict_logits(self._predict["threshold" if gated else "off"],
                                       variables, self.test_images,
                                       self.config.train.eval_batch_size)
    return evaluation.task_accuracies(logits, self.dataset.test_labels, self.stream,
                                      range(self.stream.num_tasks))

  def evaluate(self, state: TrainState, seen: int) -> tuple[list, list]:
    """Class-IL and task-IL rows of the accuracy matrix after ``seen`` tasks.

    Tasks not yet seen are None, except in row 0 (the untrained model), which
    holds every task: forward transfer compares against it.
    """
    cil, til = self.accuracies(state, seen)
    return seen_row(cil, seen), seen_row(til, seen)


def seen_row(accuracies: list[float], seen: int) -> list[float | None]:
  """The accuracy-matrix row after ``seen`` tasks: None for unseen tasks (row 0: all)."""
  if seen == 0:
    return list(accuracies)
  return [a if t < seen else None for t, a in enumerate(accuracies)]


class Interrupted(DynamosError):
  """SIGINT or SIGTERM arrived; a checkpoint was saved. ``exit_code`` is 128 + signal."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


class _StopSignals:
  """Turns the first SIGINT/SIGTERM into a request to stop after the current chunk."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:  # A second signal: stop now.
      raise KeyboardInterrupt
    self.received = signal.Signals(signum)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _open_checkpoints(config: ml_collections.ConfigDict, workdir: str) -> Checkpointer:
  """The run's checkpointer; with resume=False, earlier checkpoints are moved aside."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  os.makedirs(workdir, exist_ok=True)
  if not config.resume and os.path.isdir(directory) and os.listdir(directory):
    n = 1
    while os.path.exists(f"{directory}.old-{n}"):
      n += 1
    os.rename(directory, f"{directory}.old-{n}")
    print(f"resume=False: moved the earlier checkpoints to {directory}.old-{n}", file=sys.stderr)
  return Checkpointer(directory, config.checkpoint.keep)


class Seeds:
  """The seeds of a run and how their states are laid out.

  One seed (``config.seeds`` empty): the plain TrainState of ``config.seed``.
  Several: every seed's state stacked along a leading axis, the step lifted
  by ``parallel.over_seeds`` and the seed axis sharded over the devices.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    from dynamos_jax import config as config_lib
    self.seeds = config_lib.run_seeds(config)
    self.multi = bool(str(config.seeds).strip())
    first = Experiment(config, self.seeds[0])
    self.exps = [first] + [Experiment(config, s, data_from=first) for s in self.seeds[1:]]
    if any(e.chunks != first.chunks for e in self.exps):
      raise DynamosError("the seeds' streams have different lengths, so they cannot share one "
                         "program; run them one at a time (--config.seed=N)")
    self.mesh = (parallel.seed_mesh(len(self.seeds), config.train.seed_devices)
                 if self.multi else None)
    self.shared = parallel.place((first.train_images, first.train_labels), self.mesh, P())

  def initial_state(self) -> TrainState:
    if not self.multi:
      return self.exps[0].initial_state()
    return self.place(parallel.stack([e.initial_state() for e in self.exps]))

  def place(self, state: TrainState) -> TrainState:
    return parallel.place(state, self.mesh, P(parallel.AXIS)) if self.multi else state

  def make_runners(self) -> dict[str, ChunkRunner]:
    if not self.multi:
      return self.exps[0].make_runners()
    strategy = self.exps[0].config.train.seed_strategy
    return self.exps[0].make_runners(lambda step: parallel.over_seeds(step, strategy, self.mesh))

  def epoch_data(self, task: int, epoch: int) -> EpochData:
    if not self.multi:
      return self.exps[0].epoch_data(task, epoch)
    datas = [e.epoch_data(task, epoch) for e in self.exps]
    per_seed = parallel.place(parallel.stack([(d.order, d.mask, d.rotation) for d in datas]),
                              self.mesh, P(parallel.AXIS))
    return EpochData(*self.shared, *per_seed)

  def state_of(self, state: TrainState, i: int) -> TrainState:
    """Seed i's state, its network variables on the host (for evaluation on any device)."""
    if not self.multi:
      return state
    one = parallel.index(state, i)
    return one.replace(params=jax.device_get(one.params),
                       batch_stats=jax.device_get(one.batch_stats))

  def split(self, metrics: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per-seed metrics from the runner's [steps] or [steps, S] arrays."""
    if not self.multi:
      return [metrics]
    return [{k: v[:, i] for k, v in metrics.items()} for i in range(len(self.seeds))]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.method`` on the task stream, evaluating after each task.

  Trains ``config.seed``, or every seed of ``config.seeds`` in one program.
  Resumes from the newest usable checkpoint in ``workdir`` unless
  ``config.resume`` is False; saves one at every task end, every
  ``config.checkpoint.every_steps`` steps and on SIGINT/SIGTERM. Writes
  ``workdir/results.json`` and returns the same record.
  """
  seeds = Seeds(config)
  exps, exp = seeds.exps, seeds.exps[0]
  checkpoints = _open_checkpoints(config, workdir)
  state = seeds.initial_state()
  def check_config(progress):
    differences = config_differences(progress["config"], config.to_dict())
    if differences:
      raise DynamosError(
          f"the config differs from the one of the checkpoints in {checkpoints.directory} "
          f"({'; '.join(differences)}); run with the original config, or start over with "
          "--config.resume=False or a fresh --workdir")

  restored = checkpoints.restore_latest(state, check_config) if config.resume else None
  if restored is not None:
    state, progress = restored
    state = seeds.place(state)
    print(f"resuming from step {progress['total_steps']} ({checkpoints.directory})",
          file=sys.stderr)
  else:
    progress = {"next_chunk": 0, "total_steps": 0, "train_seconds": 0.0,
                "config": config.to_dict()}
    # Each seed's record: its log and accuracies. One seed keeps them at the top level.
    if seeds.multi:
      progress["seeds"] = [{"seed": s} for s in seeds.seeds]
    for i, record in enumerate(progress["seeds"] if seeds.multi else [progress]):
      record["log"] = []
      if not exp.gcl:  # GCL evaluates once, at the end of the stream.
        cil, til = exps[i].accuracies(seeds.state_of(state, i), 0)
        # before[p][t]: accuracy on task t just before training it (forward transfer).
        record.update(class_il=[cil], task_il=[til],
                      before={"class_il": [cil[0]], "task_il": [til[0]]})
  records = progress["seeds"] if seeds.multi else [progress]

  runners = seeds.make_runners()
  chunks = exp.chunks
  progress_bar = _progress_bar(sum(c.stop - c.start for c in chunks), config.train.progress)
  progress_bar.update(progress["total_steps"])
  last_saved, data = progress["total_steps"], None
  with _StopSignals() as stop:
    for index in range(progress["next_chunk"], len(chunks)):
      chunk = chunks[index]
      if data is None or chunk.start == 0:
        data = seeds.epoch_data(chunk.task, chunk.epoch)
      runner = runners[chunk.phase]
      compile_before = runner.compile_seconds
      t0 = time.perf_counter()
      state, metrics = runner.run(state, data, chunk.start, chunk.stop)
      progress["train_seconds"] += (time.perf_counter() - t0
                                    - (runner.compile_seconds - compile_before))
      per_seed = seeds.split(metrics)
      for seed, m in zip(seeds.seeds, per_seed):
        if not np.all(np.isfinite(m["loss"])):
          bad = progress["total_steps"] + int(np.argmin(np.isfinite(m["loss"])))
          saved = (f"the last good checkpoint is step {checkpoints.steps()[-1]} in "
                   f"{checkpoints.directory} (kept)" if checkpoints.steps()
                   else "no checkpoint was saved yet")
          raise DynamosError(f"non-finite loss at step {bad} (task {chunk.task + 1}"
                             f"{f', seed {seed}' if seeds.multi else ''}); {saved}; "
                             "lower --config.lr or check the loss weights")
      progress["total_steps"] += chunk.stop - chunk.start
      progress["next_chunk"] = index + 1
      for record, m in zip(records, per_seed):
        record["log"].append({
            "step": progress["total_steps"], "task": chunk.task + 1, "epoch": chunk.epoch + 1,
            "phase": chunk.phase, **{k: float(np.mean(v)) for k, v in m.items()}})
      progress_bar.update(chunk.stop - chunk.start)
      progress_bar.set_postfix(task=chunk.task + 1,
                               loss=f"{np.mean(metrics['loss']):.3f}",
                               acc=f"{np.mean(metrics['train_accuracy']):.2f}")
      if chunk.ends_task:
        for i, record in enumerate(records):
          _evaluate_task_end(exps[i], seeds.state_of(state, i), chunk, record, progress_bar,
                             f"seed {seeds.seeds[i]}: " if seeds.multi else "")
      due = progress["total_steps"] - last_saved >= config.checkpoint.every_steps
      if chunk.ends_task or due or stop.received:
        checkpoints.save(progress["total_steps"], state, progress)
        last_saved = progress["total_steps"]
      if stop.received and index + 1 < len(chunks):
        progress_bar.close()
        raise Interrupted(
            f"stopped by {stop.received.name} at step {progress['total_steps']}; checkpoint "
            f"saved in {checkpoints.directory}; run the same command again to resume",
            128 + stop.received.value)
  progress_bar.close()
  checkpoints.close()

  compile_seconds = sum(r.compile_seconds for r in runners.values())
  seconds = progress["train_seconds"]
  train = {"steps": progress["total_steps"], "seconds": seconds,
           "steps_per_second": progress["total_steps"] / max(seconds, 1e-9),
           "compile_seconds": compile_seconds,
           "chunk_strategy": next(iter(runners.values())).strategy,
           "backend": jax.default_backend()}
  if seeds.multi:
    runs = [{"seed": r["seed"], **accuracy_results(r), "log": r["log"]} for r in records]
    train.update(seeds=len(seeds.seeds),
                 seed_strategy=parallel.resolve_strategy(config.train.seed_strategy),
                 devices=1 if seeds.mesh is None else seeds.mesh.size)
    results = {"config": config.to_dict(), "seeds": seeds.seeds, "runs": runs,
               "summary": metrics_lib.over_seeds(runs), "train": train}
  else:
    results = {"config": config.to_dict(), **accuracy_results(progress), "train": train,
               "log": progress["log"]}
  path = os.path.join(workdir, "results.json")
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1)
  os.replace(path + ".tmp", path)  # Never leave a half-written results file.
  print(format_results(results))
  print(f"trained {progress['total_steps']} steps"
        f"{f' x {len(seeds.seeds)} seeds' if seeds.multi else ''} in {seconds:.1f} s "
        f"({train['steps_per_second']:.1f} steps/s; compile {compile_seconds:.1f} s); "
        f"results in {path}")
  return results


def _evaluate_task_end(exp: Experiment, state: TrainState, chunk: Chunk, record: dict,
                       progress_bar, prefix: str) -> None:
  """Adds the accuracies after ``chunk``'s task (or the stream's GCL accuracy) to ``record``."""
  if exp.gcl:
    record["gcl"] = exp.gcl_accuracy(state)
    progress_bar.write(f"{prefix}end of the stream: GCL accuracy {record['gcl']:.2f}")
    return
  seen = exp.seen_after[chunk.task]
  cil, til = exp.accuracies(state, seen)
  record["class_il"].append(seen_row(cil, seen))
  record["task_il"].append(seen_row(til, seen))
  if seen < len(cil):
    record["before"]["class_il"].append(cil[seen])
    record["before"]["task_il"].append(til[seen])
  progress_bar.write(f"{prefix}task {seen}: class-IL {np.mean(cil[:seen]):.2f}"
                     f"  task-IL {np.mean(til[:seen]):.2f}")


def restore_run(workdir: str) -> tuple["Experiment", TrainState, dict]:
  """``(experiment, state, progress)`` of the newest usable checkpoint in ``workdir``."""
  from dynamos_jax import config as config_lib
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise DynamosError(f"no checkpoints in {directory}: is --workdir the directory of a run?")
  progress = Checkpointer(directory, keep=1_000_000).latest_progress()
  if progress is None:
    raise DynamosError(f"no readable checkpoint in {directory}")
  # Over the defaults: keys added since the run was saved keep their defaults.
  config = config_lib.base_config()
  config.update(progress["config"])
  if str(config.seeds).strip():
    raise DynamosError(f"{workdir} is a multi-seed run (seeds {config.seeds}); evaluate and "
                       "analyze read one-seed runs: rerun a seed with --config.seed=N")
  exp = Experiment(config)
  state, progress = Checkpointer(directory, keep=1_000_000).restore_latest(exp.initial_state())
  return exp, state, progress


def _progress_bar(total: int, enabled: bool):
  import tqdm  # Imported here: only the training loop shows progress.
  return tqdm.tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
