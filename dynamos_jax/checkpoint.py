"""Orbax checkpoints of a run: the TrainState and a JSON record of its progress.

Each checkpoint (a step directory under ``WORKDIR/checkpoints``) holds
``state``, the whole TrainState (PRNG key as raw key data), and ``progress``:
the position in the chunk plan, the results so far, the resolved config, the
shape and dtype of every array of the state (a method's task hooks may change
shapes: the restore target follows the saved task) and a SHA-256 fingerprint
of the state's bytes. Orbax writes a step to a
temporary directory and renames it when complete, so a crash during a save
leaves no half checkpoint; the fingerprint catches a checkpoint garbled
afterwards. Restoring walks from the newest step back to the first usable one.
"""

import hashlib
import os
import signal
import sys
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from dynamos_jax import config as config_lib
from dynamos_jax import parallel
from dynamos_jax.errors import InputError

# Config keys that cannot change results: a resume may change them freely.
RESUME_SAFE_KEYS = frozenset(
  {
    "resume",
    "checkpoint.every_steps",
    "checkpoint.keep",
    "train.progress",
    "train.eval_batch_size",
    "train.distributed",
    "train.live_metrics",
    "train.compilation_cache",
    "train.max_tasks",  # raised, the run goes on from its checkpoint
    "train.rank_on",  # which sweep setting is named best, from the same accuracies
  }
)


def fingerprint(tree) -> str:
  """SHA-256 of the dtypes, shapes and bytes of a pytree's leaves (host arrays)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    leaf = np.asarray(leaf)
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def _leaves(tree) -> tuple[dict[str, Any], Any]:
  """Named leaves ``{"params.conv1.kernel": array, ...}`` and the tree structure."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  return {
    jax.tree_util.keystr(path, simple=True, separator="."): leaf for path, leaf in leaves
  }, treedef


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_differences(saved: dict, current: dict) -> list[str]:
  """``key: saved -> current`` for each results-affecting key that differs.

  A key the saved config lacks (added to the library after the run started)
  counts as its default value, so upgrading does not block a resume unless
  the new key is set to something else.
  """
  a, b = _flatten(config_lib.migrate(saved)), _flatten(current)
  defaults = _flatten(config_lib.base_config().to_dict())
  a.update({k: defaults[k] for k in b if k not in a and k in defaults})
  return [
    f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
    for k in sorted(set(a) | set(b))
    if k not in RESUME_SAFE_KEYS and a.get(k) != b.get(k)
  ]


def _report(directory: str, step: int, error: Exception) -> None:
  reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  print(
    f"warning: checkpoint {step} in {directory} is unusable ({reason}); trying the previous one",
    file=sys.stderr,
  )


def _saved_shapes(progress: dict, named: dict[str, Any]) -> dict[str, tuple]:
  """``{name: (shape, dtype)}`` of the saved state, checked against the template's names."""
  layout = progress.get("layout")
  if layout is None:  # Saved before layouts were recorded: shapes never changed then.
    return {k: (np.shape(v), np.result_type(v)) for k, v in named.items()}
  if set(layout) != set(named):
    missing, extra = sorted(set(named) - set(layout)), sorted(set(layout) - set(named))
    raise ValueError(
      f"its state has other arrays than this method's (missing {missing[:3]}, "
      f"unexpected {extra[:3]}): saved by another version or method"
    )
  return {k: (tuple(layout[k][0]), np.dtype(layout[k][1])) for k in named}


class Checkpointer:
  """Saves and restores (TrainState, progress) under ``directory``.

  Args:
    directory: the checkpoint root, e.g. ``WORKDIR/checkpoints``.
    keep: how many checkpoints to keep (older ones are deleted by rotation only).
  """

  def __init__(self, directory: str, keep: int):
    self.directory = directory
    self._manager = ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False
      ),
      item_names=("state", "progress"),
    )

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, progress: dict) -> None:
    """Writes checkpoint ``step`` synchronously (returns once it is complete on disk)."""
    # Gathered on every process of a multi-host run; Orbax writes from process 0.
    host_state = parallel.to_host(state.replace(key=jax.random.key_data(state.key)))
    named, _ = _leaves(host_state)
    progress = dict(
      progress,
      fingerprint=fingerprint(host_state),
      layout={k: [list(np.shape(v)), str(np.result_type(v))] for k, v in named.items()},
    )
    # Orbax cannot save zero-size arrays (an unused buffer field): leave them
    # out; restoring makes them from the layout.
    items = {k: v for k, v in named.items() if np.size(v)}
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(items), progress=ocp.args.JsonSave(progress)
      ),
      force=True,
    )
    self._manager.wait_until_finished()

  def _progress(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))[
      "progress"
    ]

  def latest_progress(self) -> dict | None:
    """The progress record (config included) of the newest readable checkpoint."""
    for step in reversed(self.steps()):
      try:
        return self._progress(step)
      except Exception as e:  # Unreadable: try the previous one.
        _report(self.directory, step, e)
    return None

  def restore_latest(
    self, template, check=None, at_most: int | None = None
  ) -> tuple[Any, dict] | None:
    """The newest usable checkpoint as (state, progress); None if there is none.

    A checkpoint that fails to load or whose fingerprint does not match is
    reported in one line and skipped (never deleted).

    Args:
      template: a TrainState of the right structure (its shapes may differ from
        the saved ones: the saved layout decides them).
      check: called with the progress record before the state is read (so a
        config with other shapes is refused by name, not by a shape error);
        what it raises propagates.
      at_most: only checkpoints of this step or earlier (None: every one).

    Raises:
      InputError: checkpoints exist but none of them is usable.
    """
    steps = [s for s in self.steps() if at_most is None or s <= at_most]
    named, treedef = _leaves(template.replace(key=jax.random.key_data(template.key)))
    for step in reversed(steps):
      try:
        progress = self._progress(step)
      except Exception as e:  # Any failure to read means: try the previous one.
        _report(self.directory, step, e)
        continue
      if check is not None:
        check(progress)
      try:
        shapes = _saved_shapes(progress, named)
        abstract = {k: jax.ShapeDtypeStruct(*s) for k, s in shapes.items() if np.prod(s[0])}
        items = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
        state = jax.tree_util.tree_unflatten(
          treedef, [items[k] if k in items else np.zeros(*shapes[k]) for k in named]
        )
        if fingerprint(jax.device_get(state)) != progress.get("fingerprint"):
          raise ValueError("its contents do not match the fingerprint saved with it")
      except Exception as e:  # Any failure to read means: try the previous one.
        _report(self.directory, step, e)
        continue
      state = state.replace(key=jax.random.wrap_key_data(state.key))
      return jax.device_put(state), progress
    if steps:
      raise InputError(
        f"none of the checkpoints {steps} in {self.directory} can be restored; start over "
        "with --config.resume=False (the old checkpoints are moved aside, not deleted) "
        "or a fresh --workdir"
      )
    return None

  def close(self) -> None:
    self._manager.close()


def open_run_directory(config, workdir: str) -> Checkpointer:
  """The run's checkpointer under ``workdir/checkpoints``.

  With ``config.resume`` False, earlier checkpoints are moved aside to
  ``checkpoints.old-N`` (never deleted).
  """
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  try:
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(workdir, f".writable-{jax.process_index()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise InputError(
      f"--workdir={workdir} cannot be a run directory ({e.strerror or e}); "
      "choose a directory you can write to"
    ) from None
  if not config.resume and os.listdir(directory) and parallel.is_writer():
    n = 1
    while os.path.exists(f"{directory}.old-{n}"):
      n += 1
    os.rename(directory, f"{directory}.old-{n}")
    print(f"resume=False: moved the earlier checkpoints to {directory}.old-{n}", file=sys.stderr)
  parallel.barrier("checkpoint directory")  # Every process sees the same directory.
  return Checkpointer(directory, config.checkpoint.keep)


class Interrupted(InputError):
  """SIGINT or SIGTERM arrived; a checkpoint was saved. ``exit_code`` is 128 + signal."""

  def __init__(self, message: str, exit_code: int):
    super().__init__(message)
    self.exit_code = exit_code


class StopSignals:
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
