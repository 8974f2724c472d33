"""The trainer: one loop for every method, benchmark and number of seeds.

``train_and_evaluate`` reads as its phases: lay out the seeds, open the
checkpoint directory, start or resume, train the planned chunks (task hooks,
evaluation and checkpoints between them), report. The pieces live in their
own rooms: ``experiment`` (one seed's method, benchmark and plan), ``seeds``
(the multi-seed layout), ``chunks`` (the plan and the chunk runner),
``checkpoint`` (checkpoints and stop signals), ``reporting`` (tables,
results.json, the progress bar).
"""

import os
import sys
import time

import jax
import ml_collections
import numpy as np

from dynamos_jax import benchmarks, methods, reporting, task_arrays, workdir_lock
from dynamos_jax import config as config_lib
from dynamos_jax import sweep as sweep_lib
from dynamos_jax.accuracy import seen_row
from dynamos_jax.checkpoint import (
  Checkpointer,
  Interrupted,
  StopSignals,
  config_differences,
  open_run_directory,
)
from dynamos_jax.errors import InputError
from dynamos_jax.experiment import Experiment
from dynamos_jax.live import LiveMetrics
from dynamos_jax.seeds import Seeds
from dynamos_jax.state import TrainState

__all__ = [
  "Experiment",
  "Interrupted",
  "TrainState",
  "restore_run",
  "restore_seeds",
  "train_and_evaluate",
]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.method`` on ``config.dataset``, evaluating after each task.

  Trains ``config.seed``, or every seed of ``config.seeds`` in one program.
  Resumes from the newest usable checkpoint in ``workdir`` unless
  ``config.resume`` is False; saves one at every task end, every
  ``config.checkpoint.every_steps`` steps and on SIGINT/SIGTERM. Writes
  ``workdir/results.json`` and returns the same record. Refuses (``WorkdirInUse``) a
  ``workdir`` that another live program holds, before writing or moving anything there.
  """
  # Taken before open_run_directory, which may move the checkpoints aside.
  with workdir_lock.hold(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  checkpoints = open_run_directory(config, workdir)
  seeds = Seeds(config)
  state, progress = _start_or_resume(config, seeds, checkpoints)
  live = _open_live(config, workdir, seeds, progress)
  # The reports of the tasks the checkpoint has not finished are written again.
  for directory, member_seeds in seeds.directories(workdir):
    task_arrays.keep_finished(
      directory, member_seeds, sum(c.ends_task for c in seeds.chunks[: progress["next_chunk"]])
    )
  runners = seeds.make_runners()
  try:
    state = _train(config, workdir, seeds, runners, state, progress, checkpoints, live)
  finally:
    live.close()
  checkpoints.close()
  _method_results(seeds, state, progress)
  compile_seconds = sum(r.compile_seconds for r in runners.values())
  seconds = progress["train_seconds"]
  tasks = len(seeds.exps[0].benchmark.batches)
  trained = sum(c.ends_task for c in seeds.chunks[: progress["next_chunk"]])
  train = {
    "tasks_trained": trained,  # < tasks: stopped by train.max_tasks
    "tasks": tasks,
    "steps": progress["total_steps"],
    "seconds": seconds,
    "steps_per_second": progress["total_steps"] / max(seconds, 1e-9),
    "compile_seconds": compile_seconds,
    "compiles": sum(r.compiles for r in runners.values()),
    "chunk_strategy": next(iter(runners.values())).strategy,
    "backend": jax.default_backend(),
  }
  results = reporting.results_record(config, seeds, progress, train)
  path = reporting.write_results(results, workdir)
  print(reporting.format_results(results))
  members = f" x {len(seeds.seeds)} {'members' if seeds.sweep else 'seeds'}" if seeds.multi else ""
  print(
    f"trained {progress['total_steps']} steps{members} in {seconds:.1f} s "
    f"({train['steps_per_second']:.1f} steps/s; compile {compile_seconds:.1f} s); "
    f"results in {path}"
  )
  if trained < tasks:
    print(
      f"stopped after task {trained} of {tasks} (train.max_tasks={config.train.max_tasks}); "
      "to go on, run the same command with a larger --config.train.max_tasks (0: every task)"
    )
  return results


def _method_results(seeds: Seeds, state: TrainState, progress: dict) -> None:
  """Each seed's record gets what its method adds to results.json (``Method.results``)."""
  for i, record in enumerate(_records(progress)):
    exp = seeds.exps[i]
    own = exp.method.results(seeds.state_of(state, i).learner, exp.benchmark)
    if own is not None:
      record["method"] = own


def _start_or_resume(config, seeds: Seeds, checkpoints: Checkpointer) -> tuple[TrainState, dict]:
  """The newest usable checkpoint's (state, progress), or a fresh start evaluated untrained."""
  state = seeds.initial_state()

  def check_config(progress):
    differences = config_differences(progress["config"], config.to_dict())
    if differences:
      raise InputError(
        f"the config differs from the one of the checkpoints in {checkpoints.directory} "
        f"({'; '.join(differences)}); run with the original config, or start over with "
        "--config.resume=False or a fresh --workdir"
      )

  restored = checkpoints.restore_latest(state, check_config) if config.resume else None
  if restored is not None:
    state, progress = restored
    print(
      f"resuming from step {progress['total_steps']} ({checkpoints.directory})", file=sys.stderr
    )
    return seeds.place(state), progress
  progress = {"next_chunk": 0, "total_steps": 0, "train_seconds": 0.0, "config": config.to_dict()}
  # Each seed's record: its log and accuracies. One seed keeps them at the top level.
  if seeds.multi:
    progress["seeds"] = [{"seed": s} for s in seeds.seeds]
  for i, record in enumerate(_records(progress)):
    record["log"] = []
    exp = seeds.exps[i]
    if not exp.gcl:  # GCL evaluates once, at the end of the stream.
      one = seeds.state_of(state, i)
      _first_row(record, exp.evaluate(one, exp.phase_after(0)))
      if exp.validation:  # The validation split's rows, kept as the test rows are.
        record["validation"] = {}
        _first_row(record["validation"], exp.evaluate(one, exp.phase_after(0), split="valid"))
  return state, progress


def _first_row(record: dict, scores: dict) -> None:
  """Starts ``record``'s accuracy matrices (``{protocol: [rows]}``) with the untrained
  model's ``scores``, and ``before``: ``before[p][t]``, the accuracy on task t just before
  training it (forward transfer)."""
  record.update({p: [scores[p]] for p in scores})
  record["before"] = {p: [scores[p][0]] for p in scores}


def _add_row(record: dict, scores: dict, seen: int) -> None:
  """Adds the row of ``scores`` after ``seen`` tasks to ``record``'s matrices and ``before``."""
  for protocol, accuracies in scores.items():
    record[protocol].append(seen_row(accuracies, seen))
    if seen < len(accuracies):
      record["before"][protocol].append(accuracies[seen])


def _open_live(config, workdir: str, seeds: Seeds, progress: dict) -> LiveMetrics:
  """The live metric streams, with the untrained model's evaluation on a fresh start."""
  live = seeds.live_metrics(workdir, progress["total_steps"], config.train.live_metrics)
  if progress["total_steps"] == 0:
    for i, record in enumerate(_records(progress)):
      if "before" in record:  # GCL evaluates once, at the end of the stream.
        live.evaluation(i, 0, 0, {p: float(np.mean(record[p][0])) for p in record["before"]})
    live.flush()
  return live


def _records(progress: dict) -> list[dict]:
  """Each seed's record of accuracies and log (one seed: the progress record itself)."""
  return progress["seeds"] if "seeds" in progress else [progress]


def _train(
  config,
  workdir: str,
  seeds: Seeds,
  runners,
  state: TrainState,
  progress: dict,
  checkpoints: Checkpointer,
  live: LiveMetrics,
) -> TrainState:
  """Runs the planned chunks from ``progress["next_chunk"]``; updates ``progress`` in place."""
  chunks = seeds.chunks
  bar = reporting.progress_bar(sum(c.stop - c.start for c in chunks), config.train.progress)
  bar.update(progress["total_steps"])
  last_saved, data = progress["total_steps"], None
  with StopSignals() as stop:
    for index in range(progress["next_chunk"], len(chunks)):
      chunk = chunks[index]
      if chunk.starts_task:
        state = seeds.run_hook(state, "begin_task", chunk.task)
      if data is None or chunk.start == 0:
        data = seeds.epoch_data(chunk.task, chunk.epoch)
      runner = runners[chunk.phase]
      compile_before = runner.compile_seconds
      t0 = time.perf_counter()
      state, metrics = runner.run(state, data, chunk.start, chunk.stop)
      progress["train_seconds"] += (
        time.perf_counter() - t0 - (runner.compile_seconds - compile_before)
      )
      per_seed = seeds.split(metrics)
      _check_finite(per_seed, seeds, chunk, progress, checkpoints)
      progress["total_steps"] += chunk.stop - chunk.start
      progress["next_chunk"] = index + 1
      for i, (record, m) in enumerate(zip(_records(progress), per_seed)):
        record["log"].append(
          {
            "step": progress["total_steps"],
            "task": chunk.task + 1,
            "epoch": chunk.epoch + 1,
            "phase": chunk.phase,
            **{k: float(np.mean(v)) for k, v in m.items()},
          }
        )
        live.log(i, record["log"][-1])
      bar.update(chunk.stop - chunk.start)
      bar.set_postfix(
        task=chunk.task + 1,
        loss=f"{np.mean(metrics['loss']):.3f}",
        acc=f"{np.mean(metrics['train_accuracy']):.2f}",
      )
      if chunk.ends_epoch:
        state = seeds.end_epoch(state, chunk)
      if chunk.ends_task:
        state = seeds.run_hook(state, "end_task", chunk.task)
        for i, record in enumerate(_records(progress)):
          one = seeds.state_of(state, i)
          scores = _evaluate_task_end(
            seeds.exps[i], one, chunk, record, bar, f"{seeds.name(i)}: " if seeds.multi else ""
          )
          live.evaluation(i, progress["total_steps"], chunk.task + 1, scores)
          task_arrays.report(seeds.directory(workdir, i), seeds.exps[i], one, chunk.task)
      live.flush()
      due = progress["total_steps"] - last_saved >= config.checkpoint.every_steps
      if chunk.ends_task or due or stop.received:
        checkpoints.save(progress["total_steps"], state, progress)
        last_saved = progress["total_steps"]
      if stop.received and index + 1 < len(chunks):
        bar.close()
        raise Interrupted(
          f"stopped by {stop.received.name} at step {progress['total_steps']}; checkpoint "
          f"saved in {checkpoints.directory}; run the same command again to resume",
          128 + stop.received.value,
        )
  bar.close()
  return state


def _check_finite(
  per_seed: list[dict], seeds: Seeds, chunk, progress: dict, checkpoints: Checkpointer
) -> None:
  """The NaN guard: a non-finite loss stops the run, naming the last good checkpoint."""
  for i, m in enumerate(per_seed):
    if not np.all(np.isfinite(m["loss"])):
      bad = progress["total_steps"] + int(np.argmin(np.isfinite(m["loss"])))
      saved = (
        f"the last good checkpoint is step {checkpoints.steps()[-1]} in "
        f"{checkpoints.directory} (kept)"
        if checkpoints.steps()
        else "no checkpoint was saved yet"
      )
      raise InputError(
        f"non-finite loss at step {bad} (task {chunk.task + 1}"
        f"{f', {seeds.name(i)}' if seeds.multi else ''}); {saved}; "
        "lower --config.lr or check the loss weights"
      )


def _evaluate_task_end(
  exp: Experiment, state: TrainState, chunk, record: dict, bar, prefix: str
) -> dict[str, float]:
  """Adds the accuracies after ``chunk``'s task (or the stream's GCL accuracy) to ``record``,
  and those on the validation split to ``record["validation"]`` when there is one.

  Returns each protocol's test accuracy on the tasks seen so far (or the GCL accuracy).
  """
  scores = exp.evaluate(state, chunk.phase)
  if exp.gcl:
    record["gcl"] = scores["gcl"]
    bar.write(f"{prefix}end of the stream: GCL accuracy {record['gcl']:.2f}")
    return {"gcl": float(scores["gcl"])}
  seen = exp.benchmark.seen_after[chunk.task]
  _add_row(record, scores, seen)
  if exp.validation:
    _add_row(record["validation"], exp.evaluate(state, chunk.phase, split="valid"), seen)
  bar.write(
    f"{prefix}task {seen}: "
    + "  ".join(f"{p.replace('_il', '-IL')} {np.mean(a[:seen]):.2f}" for p, a in scores.items())
  )
  return {p: float(np.mean(a[:seen])) for p, a in scores.items()}


def restore_seeds(
  workdir: str, seed: int | None = None
) -> list[tuple[Experiment, TrainState, dict]]:
  """``(experiment, state, progress)`` of each seed of the newest usable checkpoint in ``workdir``.

  A multi-seed run gives every seed (``seed``: only that one) with its own
  record of accuracies and log in ``progress``; a one-seed run gives its seed.
  A sweep's setting is read through its folder, ``workdir`` = SWEEP/sweep/<setting>.

  Raises:
    InputError: no run there, no readable checkpoint, ``seed`` not one of the
      run's, or a sweep's directory rather than one of its settings'.
  """
  member = (
    None
    if os.path.isdir(os.path.join(workdir, "checkpoints"))
    else sweep_lib.member_directory(workdir)
  )
  directory = os.path.join(os.path.abspath(member[0] if member else workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise InputError(f"no checkpoints in {directory}: is --workdir the directory of a run?")
  progress = Checkpointer(directory, keep=1_000_000).latest_progress()
  if progress is None:
    raise InputError(f"no readable checkpoint in {directory}")
  # Over the defaults: keys added since the run was saved keep their defaults.
  config = config_lib.base_config()
  config.update(config_lib.migrate(progress["config"]))
  for kind, name, registry in (
    ("method", config.method, methods.REGISTRY),
    ("dataset", config.dataset, benchmarks.REGISTRY),
  ):
    if name not in registry:
      raise InputError(
        f"{directory} holds a run of {kind} {name!r}, which this installation "
        f"does not define (it has {', '.join(sorted(registry))}): read it with "
        "the code that wrote it"
      )
  run_seeds = config_lib.run_seeds(config)
  if seed is not None and seed not in run_seeds:
    raise InputError(
      f"seed {seed} is not one of the run's seeds {run_seeds}: drop --seed or pick one of them"
    )
  layout = Seeds(config)
  labels = layout.sweep.labels if layout.sweep else []
  if layout.sweep and member is None:
    raise InputError(
      f"{workdir} is a sweep of {len(labels)} settings: read one with "
      f"--workdir={os.path.join(workdir, sweep_lib.DIRECTORY, labels[0])} "
      f"(settings: {', '.join(labels)})"
    )
  if member and member[1] not in labels:
    raise InputError(
      f"{member[1]} is not a setting of the sweep in {member[0]}: use one of "
      f"{', '.join(labels) or '(none: it is not a sweep)'}"
    )
  state, progress = Checkpointer(directory, keep=1_000_000).restore_latest(layout.initial_state())
  if not layout.multi:
    return [(layout.exps[0], state, progress)]
  shared = {k: v for k, v in progress.items() if k != "seeds"}
  return [
    (layout.exps[i], layout.state_of(state, i), {**shared, **progress["seeds"][i]})
    for i, s in enumerate(layout.seeds)
    if (seed is None or s == seed)
    and (member is None or layout.sweep.label(layout.settings[i]) == member[1])
  ]


def restore_run(workdir: str, seed: int | None = None) -> tuple[Experiment, TrainState, dict]:
  """One seed's ``(experiment, state, progress)`` (``restore_seeds``); a multi-seed run
  needs ``seed``."""
  restored = restore_seeds(workdir, seed)
  if len(restored) > 1:
    seeds = [e.seed for e, _, _ in restored]
    raise InputError(f"{workdir} is a multi-seed run (seeds {seeds}): pick one with --seed=N")
  return restored[0]
