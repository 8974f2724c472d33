"""Continual-learning metrics from an accuracy matrix (docs/metrics.md).

Notation: ``matrix[i][j]`` is the accuracy (percent) on task j after
training task i, row 0 being the untrained model and entries for tasks not
yet seen None; ``before[j]`` is the accuracy on task j just before training
it (``before[0]`` is the untrained model's). With T tasks:

- final average: mean over j of matrix[T][j];
- forgetting: mean over j < T-1 of max_{j < i <= T} matrix[i][j] - matrix[T][j]
  (the best accuracy on j once learned, the final row included, minus the
  final one, so forgetting >= 0, as in docs/dynamos.md#metrics and Mammoth; Mammoth also
  takes each task's "before learning" entry into the max (it appends it to
  the previous row), which only matters when a task is better before it is
  learned);
- backward transfer (BWT): mean over j < T-1 of matrix[T][j] - matrix[j+1][j];
- forward transfer (FWT): mean over j >= 1 of before[j] - matrix[0][j].

Forgetting, BWT and FWT need the tasks learned one after the other: for a
joint run (two rows) or a single task they are None.
"""

import numpy as np


def final_average(matrix: list[list[float | None]]) -> float:
  """Mean accuracy over the tasks seen in the last row."""
  return float(np.mean([v for v in matrix[-1] if v is not None]))


def forgetting(matrix: list[list[float | None]]) -> float | None:
  a, tasks = _sequential(matrix)
  if a is None:
    return None
  return float(
    np.mean([max(a[i][j] for i in range(j + 1, tasks + 1)) - a[tasks][j] for j in range(tasks - 1)])
  )


def backward_transfer(matrix: list[list[float | None]]) -> float | None:
  a, tasks = _sequential(matrix)
  if a is None:
    return None
  return float(np.mean([a[tasks][j] - a[j + 1][j] for j in range(tasks - 1)]))


def forward_transfer(matrix: list[list[float | None]], before: list[float]) -> float | None:
  a, tasks = _sequential(matrix)
  if a is None:
    return None
  if len(before) < tasks:
    raise ValueError(f"before has {len(before)} entries; {tasks} tasks need {tasks}")
  return float(np.mean([before[j] - a[0][j] for j in range(1, tasks)]))


def summarize(matrix: list[list[float | None]], before: list[float]) -> dict[str, float | None]:
  """All four metrics of one protocol (class-IL or task-IL)."""
  return {
    "final_average": final_average(matrix),
    "forgetting": forgetting(matrix),
    "backward_transfer": backward_transfer(matrix),
    "forward_transfer": forward_transfer(matrix, before),
  }


def _sequential(matrix):
  """(matrix, T) when it records T > 1 tasks learned one at a time, else (None, T).

  A run stopped after its first T tasks (``train.max_tasks``) has T + 1 rows: its
  matrix is that of a T-task benchmark, the later tasks' columns dropped.
  """
  tasks = min(len(matrix[0]), len(matrix) - 1)
  if tasks < 2 or any(len(row) != len(matrix[0]) for row in matrix):
    return None, tasks
  matrix = [row[:tasks] for row in matrix]
  for i, row in enumerate(matrix[1:], start=1):
    if any(row[j] is None for j in range(i)):
      raise ValueError(f"row {i} of the accuracy matrix misses a seen task: {row}")
  return matrix, tasks


def over_seeds(results: list[dict]) -> dict:
  """Mean and standard deviation (ddof=1; 0 for one seed) of every metric over seeds.

  Args:
    results: one record per seed with a ``metrics`` entry as in results.json.

  Returns:
    ``{protocol: {metric: {"mean", "std", "values"}}}``; a metric undefined
    for the run (None, e.g. forgetting of joint) has mean and std None.
  """
  summary = {}
  first = results[0]["metrics"]
  for protocol in first:
    summary[protocol] = {}
    for metric in first[protocol]:
      values = [r["metrics"][protocol][metric] for r in results]
      defined = [v for v in values if v is not None]
      mean = float(np.mean(defined)) if defined else None
      std = (float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0) if defined else None
      summary[protocol][metric] = {"mean": mean, "std": std, "values": values}
  return summary
