"""Training: the state pytree, the jitted step, the chunk runner and the task loop.

Data flows one way: config -> dataset -> stream of padded batches (indices
into the device-resident training set) -> jitted steps, run in chunks ->
evaluation after each task -> results.json.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dynamos_jax import buffer as buffer_lib
from dynamos_jax import evaluation
from dynamos_jax import methods
from dynamos_jax.data import sources
from dynamos_jax.data.streams import ClassIncremental, epoch_batches, num_batches
from dynamos_jax.errors import DynamosError
from dynamos_jax.models.resnet import ResNet


# The dataset each benchmark streams.
BENCHMARK_DATASET = {"seq-mnist": "mnist"}


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
  order: int32 [rows, B] sample indices of each batch; mask: bool [rows, B].
  """
  images: jax.Array
  labels: jax.Array
  order: jax.Array
  mask: jax.Array


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
    batch = methods.Batch(data.images[index], data.labels[index], mask)
    key = jax.random.fold_in(state.key, state.step)
    gates_key, replay_key, reservoir_key = jax.random.split(key, 3)

    if phase == "warmup":
      loss_fn = lambda p: methods.base.plain_cross_entropy(model, p, state.batch_stats, batch)
    else:
      replay, replay_mask = (
          buffer_lib.sample(state.buffer, replay_key, minibatch_size, only_valid=only_valid)
          if use_buffer else (None, None))
      loss_fn = lambda p: method.loss(model, p, state.batch_stats, batch, replay, replay_mask,
                                      gates_key)
    grads, out = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    new_buffer = state.buffer
    if use_buffer:
      # Insert after the update, with the logits and attention of the
      # pre-update forward (spec 6.1); only correct predictions are written.
      correct = (jnp.argmax(out.logits, -1) == batch.labels) & mask
      draws = buffer_lib.reservoir_draws(reservoir_key, state.buffer, mask, correct,
                                         only_valid=only_valid)
      new_buffer = buffer_lib.insert(state.buffer, draws, batch.images, batch.labels,
                                     out.logits, out.attention, mask, correct,
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


def _format_table(matrix: list[list[float | None]], title: str) -> str:
  tasks = len(matrix[0])
  lines = [title, "after task | " + " ".join(f"  T{j + 1:<4}" for j in range(tasks)) + " |  mean"]
  for i, row in enumerate(matrix):
    seen = [v for v in row if v is not None]
    cells = " ".join(f"{v:7.2f}" if v is not None else "      -" for v in row)
    name = "untrained" if i == 0 else f"{i:>9}"
    lines.append(f"{name:>10} | {cells} | {np.mean(seen):6.2f}")
  return "\n".join(lines)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.method`` on the task stream, evaluating after each task.

  Writes ``workdir/results.json`` and returns the same record.
  """
  method = methods.get_method(config)
  dataset = sources.load_dataset(BENCHMARK_DATASET[config.dataset], config.data.source,
                                 config.data.path or None, config.data.tfds_data_dir or None)
  stream = ClassIncremental(num_tasks=5, classes_per_task=2)
  image_shape = dataset.train_images.shape[1:]
  model = make_model(config, method, dataset.num_classes)
  tx = optax.sgd(config.lr)

  # Named streams from the seed (design.md section 3): never a key used twice.
  init_key, data_key, train_key = jax.random.split(jax.random.key(config.seed), 3)
  state = create_train_state(model, method, tx, image_shape, config.buffer_size, init_key,
                             train_key)

  train_images = jax.device_put(dataset.train_images)
  train_labels = jax.device_put(dataset.train_labels)
  test_images = jax.device_put(dataset.test_images)
  task_indices = [stream.task_indices(dataset.train_labels, t) for t in range(stream.num_tasks)]
  rows = max(num_batches(len(ix), config.batch_size) for ix in task_indices)
  warm = warmup_steps(config, num_batches(len(task_indices[0]), config.batch_size))
  warm = warm if method.gated else 0  # Only gated methods have a warm-up (spec 12).

  runners = {phase: ChunkRunner(
      make_train_step(model, method, tx, phase=phase, minibatch_size=config.minibatch_size,
                      only_valid=config.buffer.only_valid),
      config.train.chunk_strategy, config.train.chunk_size)
      for phase in (("warmup", "main") if warm else ("main",))}
  predict = {mode: evaluation.make_predict(model, mode) for mode in ("threshold", "off")}

  def evaluate(state: TrainState, seen: int, mode: str):
    """Class-IL and task-IL rows: tasks < seen (all tasks if seen == 0), None after."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = evaluation.predict_logits(predict[mode], variables, test_images,
                                       config.train.eval_batch_size)
    tasks = range(stream.num_tasks if seen == 0 else seen)
    cil, til = evaluation.task_accuracies(logits, dataset.test_labels, stream, tasks)
    pad = [None] * (stream.num_tasks - len(cil))
    return cil + pad, til + pad

  # Row 0: the untrained model, evaluated on every task (without agents when
  # warm-up is on, as the reference evaluates it with the warm-up flag set).
  cil, til = evaluate(state, 0, "off" if warm or not method.gated else "threshold")
  class_il, task_il = [cil], [til]

  chunks = plan_chunks([num_batches(len(ix), config.batch_size) for ix in task_indices],
                       config.epochs, warm, config.train.chunk_size,
                       config.train.max_steps_per_task)
  progress = _progress_bar(sum(c.stop - c.start for c in chunks), config.train.progress)
  log, train_seconds, total_steps, data = [], 0.0, 0, None
  for chunk in chunks:
    if data is None or chunk.start == 0:  # A new epoch: reshuffle from (task, epoch).
      epoch_key = jax.random.fold_in(jax.random.fold_in(data_key, chunk.task), chunk.epoch)
      order, mask = epoch_batches(epoch_key, task_indices[chunk.task], config.batch_size,
                                  pad_to=rows)
      data = EpochData(train_images, train_labels, jnp.asarray(order), jnp.asarray(mask))
    runner = runners[chunk.phase]
    compile_before = runner.compile_seconds
    t0 = time.perf_counter()
    state, metrics = runner.run(state, data, chunk.start, chunk.stop)
    train_seconds += time.perf_counter() - t0 - (runner.compile_seconds - compile_before)
    if not np.all(np.isfinite(metrics["loss"])):
      bad = total_steps + int(np.argmin(np.isfinite(metrics["loss"])))
      raise DynamosError(f"non-finite loss at step {bad} (task {chunk.task + 1}); lower "
                         "--config.lr or check the loss weights")
    total_steps += chunk.stop - chunk.start
    log.append({"step": total_steps, "task": chunk.task + 1, "epoch": chunk.epoch + 1,
                "phase": chunk.phase, **{k: float(np.mean(v)) for k, v in metrics.items()}})
    progress.update(chunk.stop - chunk.start)
    progress.set_postfix(task=chunk.task + 1, loss=f"{log[-1]['loss']:.3f}",
                         acc=f"{log[-1]['train_accuracy']:.2f}")
    if chunk.ends_task:
      cil, til = evaluate(state, chunk.task + 1, "threshold" if method.gated else "off")
      class_il.append(cil)
      task_il.append(til)
      progress.write(f"task {chunk.task + 1}: class-IL {np.mean(cil[:chunk.task + 1]):.2f}  "
                     f"task-IL {np.mean(til[:chunk.task + 1]):.2f}")
  progress.close()

  compile_seconds = sum(r.compile_seconds for r in runners.values())
  results = {
      "config": config.to_dict(),
      "class_il": {"matrix": class_il, "final_average": float(np.mean(class_il[-1]))},
      "task_il": {"matrix": task_il, "final_average": float(np.mean(task_il[-1]))},
      "train": {"steps": total_steps, "seconds": train_seconds,
                "steps_per_second": total_steps / max(train_seconds, 1e-9),
                "compile_seconds": compile_seconds,
                "chunk_strategy": next(iter(runners.values())).strategy,
                "backend": jax.default_backend()},
      "log": log,
  }
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "results.json")
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1)
  os.replace(path + ".tmp", path)  # Never leave a half-written results file.
  print(_format_table(class_il, "Class-IL accuracy (%)"))
  print(_format_table(task_il, "Task-IL accuracy (%)"))
  print(f"trained {total_steps} steps in {train_seconds:.1f} s "
        f"({results['train']['steps_per_second']:.1f} steps/s; compile {compile_seconds:.1f} s); "
        f"results in {path}")
  return results


def _progress_bar(total: int, enabled: bool):
  import tqdm  # Imported here: only the training loop shows progress.
  return tqdm.tqdm(total=total, unit="step", disable=not enabled, dynamic_ncols=True)
