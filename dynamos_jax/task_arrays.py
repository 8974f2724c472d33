"""What a method reports after each task: arrays kept per seed and task for analyze.

A method's ``after_task(state, task, benchmark) -> dict[str, array]``
(methods/base.py): what a user of the method looks at after each task that a
final checkpoint cannot show (SLNI's per-layer sparsity and overlap as the
tasks go by, DGM's samples of every seen class). The trainer calls it after
the task's end hook and evaluation, for every seed, and keeps the arrays in
``WORKDIR/after_task/seed_N/task_T.npz`` (T counts from 1). A run that
starts or resumes drops the files of the tasks it has not finished, so the
folder always describes the run's checkpoints. Only process 0 of a
multi-host run writes.
"""

import os
import re

import numpy as np

from dynamos_jax import parallel

_NAME = re.compile(r"task_(\d+)\.npz$")


def directory(workdir: str, seed: int) -> str:
  return os.path.join(workdir, "after_task", f"seed_{seed}")


def _tasks(folder: str) -> dict[int, str]:
  """{T: path} of the reports in ``folder``."""
  if not os.path.isdir(folder):
    return {}
  found = (_NAME.fullmatch(n) for n in os.listdir(folder))
  return {int(m.group(1)): os.path.join(folder, m.group(0)) for m in found if m}


def report(workdir: str, exp, state, task: int) -> None:
  """Runs ``exp.method.after_task`` on one seed's ``state`` after planned task ``task`` (from 0)
  and saves its arrays (nothing when it reports none)."""
  arrays = {
    k: np.asarray(v)
    for k, v in exp.method.after_task(state.learner, exp.task_data(task), exp.benchmark).items()
  }
  if not arrays or not parallel.is_writer():
    return
  folder = directory(workdir, exp.seed)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"task_{task + 1}.npz")
  # Written aside and renamed: a kill mid-write never leaves a truncated report.
  with open(path + ".tmp", "wb") as f:
    np.savez(f, **arrays)
  os.replace(path + ".tmp", path)


def keep_finished(workdir: str, seeds: list[int], tasks_done: int) -> None:
  """Drops the reports of tasks after the first ``tasks_done`` (a resumed or restarted run
  writes them again)."""
  if not parallel.is_writer():
    return
  for seed in seeds:
    for t, path in _tasks(directory(workdir, seed)).items():
      if t > tasks_done:
        os.remove(path)


def load(workdir: str, seed: int) -> list[dict[str, np.ndarray]]:
  """The reports of ``seed``, one dict per finished task in order (empty: none kept)."""
  found = _tasks(directory(workdir, seed))
  out = []
  for t in range(1, len(found) + 1):
    if t not in found:  # Tasks are reported in order: a gap ends the record.
      break
    with np.load(found[t]) as z:
      out.append({k: z[k] for k in z.files})
  return out
