"""Live metrics: a run's metrics as it goes, as JSON lines and TensorBoard events.

One stream per seed under ``WORKDIR/live/seed_N/``: ``metrics.jsonl`` (one
JSON object per chunk, the entry results.json's log gets, and one per
evaluation, ``{"step", "task", "eval": {protocol: accuracy}}``) and TensorBoard
event files (``tensorboard --logdir WORKDIR/live``: the seeds show as runs).
results.json stays the record of the run; these streams are for watching it.

A resume keeps each seed's JSON lines up to the checkpoint's step and tells
TensorBoard to drop the events logged after it (``purge_step``), so a resumed
run's streams read like those of an uninterrupted run. Only process 0 of a
multi-host run writes.
"""

import json
import os

import jax
import numpy as np
import tensorboardX

# Keys of a log entry that say where it is, not what was measured.
_POSITION = ("step", "task", "epoch", "phase")


class LiveMetrics:
  """The live streams of a run's seeds (``enabled=False``: a no-op)."""

  def __init__(self, workdir: str, seeds: list[int], resume_step: int, enabled: bool = True):
    """Args: the run directory; the run's seeds; the step the run starts (or resumes) at."""
    self.enabled = enabled and jax.process_index() == 0
    self.files, self.writers = [], []
    if not self.enabled:
      return
    for seed in seeds:
      directory = os.path.join(workdir, "live", f"seed_{seed}")
      os.makedirs(directory, exist_ok=True)
      path = os.path.join(directory, "metrics.jsonl")
      _keep_until(path, resume_step)
      self.files.append(open(path, "a"))
      # purge_step: TensorBoard ignores the earlier files' events from this step on.
      self.writers.append(
        tensorboardX.SummaryWriter(
          directory, purge_step=resume_step + 1 if resume_step else None, flush_secs=30
        )
      )

  def log(self, seed_index: int, entry: dict) -> None:
    """One chunk's log entry (``step``, ``task``, ``epoch``, ``phase`` and scalar metrics)."""
    if not self.enabled:
      return
    self._line(seed_index, entry)
    for name, value in entry.items():
      if name not in _POSITION:
        self.writers[seed_index].add_scalar(f"train/{name}", value, entry["step"])

  def evaluation(self, seed_index: int, step: int, task: int, scores: dict) -> None:
    """An evaluation after ``task`` tasks: ``{protocol: accuracy}`` (the mean over seen tasks)."""
    if not self.enabled:
      return
    self._line(seed_index, {"step": step, "task": task, "eval": scores})
    for protocol, accuracy in scores.items():
      self.writers[seed_index].add_scalar(f"eval/{protocol}", accuracy, step)

  def flush(self) -> None:
    for f, w in zip(self.files, self.writers):
      f.flush()
      w.flush()

  def close(self) -> None:
    for f, w in zip(self.files, self.writers):
      f.close()
      w.close()
    self.files, self.writers = [], []

  def _line(self, seed_index: int, record: dict) -> None:
    self.files[seed_index].write(json.dumps(record, default=_plain) + "\n")


def _plain(value):
  """NumPy scalars as Python numbers for JSON."""
  return value.item() if isinstance(value, np.generic) else str(value)


def _keep_until(path: str, step: int) -> None:
  """Drops the lines of ``path`` logged after ``step`` (a resume re-runs those steps)."""
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line in f:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        break  # A line cut by a crash ends what can be trusted.
  with open(path + ".tmp", "w") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)
