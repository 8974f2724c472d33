"""What the authors' Dynamos run reads from us and writes back to us, without torch.

- ``mnist_arrays``: MNIST through our own loader (``dynamos_jax.data.sources``,
  the ``files`` or ``bundled`` source), as torchvision's MNIST holds it (grey uint8
  [N, 28, 28], int64 labels), so their run trains and tests on the bytes ours does.
- ``accuracy_record``: their ``evaluate`` calls, in the order their training loop
  makes them, as our results.json's ``class_il`` / ``task_il`` entries and
  ``metrics`` (computed by ``dynamos_jax.metrics``, so both sides share one
  definition of forgetting and transfer).
- ``gcl_record``: their MNIST-360 evaluation (one accuracy, plus the per-class
  counts the driver records) as our results.json's ``gcl`` / ``metrics`` entries.
- ``bn_draws`` / ``bn_from_buffer_record``: the buffer slots of the BatchNorm
  re-estimation after their MNIST-360 run (``--bn_from_buffer``), and its
  evaluation beside theirs.
- ``StepLog``: their per-step loss dictionaries under our log's metric names,
  averaged over chunks of steps as our log is.
- ``seed_table`` / ``gcl_seed_table``: per-seed tables and mean +- std.

numpy and dynamos_jax's numpy-only modules only (tests/scripts/test_reference_dynamos.py).
"""

import numpy as np

from dynamos_jax import metrics
from dynamos_jax.data import sources
from dynamos_jax.errors import DataError

# Their observe()'s loss keys -> our Dynamos metric names (methods/dynamos/dynamos.py).
LOSS_NAMES = {
  "CE_curr": "ce",
  "Rwd_curr": "reinforce",
  "Prototype_loss": "prototype",
  "Logits_buff": "mse_logits",
  "Logits_Policy_buff": "mse_attention",
  "CE_buff": "replay_ce",
  "Rwd_buff": "replay_reinforce",
  "Buf_Prototype_loss": "replay_prototype",
  "Total_loss": "loss",
}


def mnist_arrays(source: str, path: str | None):
  """MNIST as our ``source`` loads it, in torchvision's layout.

  Returns:
    (train_images uint8 [N, 28, 28], train_labels int64 [N], test_images uint8
    [M, 28, 28], test_labels int64 [M]). Our loader replicates the grey image to
    3 channels; their MyMNIST does the same from the grey one, so channel 0 is it.

  Raises:
    DataError: from our loader, or when the 3 channels differ (not grey MNIST).
  """
  data = sources.load_dataset("mnist", source, path)
  out = []
  for split, images, labels in (
    ("train", data.train_images, data.train_labels),
    ("test", data.test_images, data.test_labels),
  ):
    if not (
      np.array_equal(images[..., 0], images[..., 1])
      and np.array_equal(images[..., 0], images[..., 2])
    ):
      raise DataError(f"mnist/{source}: the {split} images' 3 channels differ; give grey MNIST")
    out += [np.ascontiguousarray(images[..., 0]), labels.astype(np.int64)]
  return tuple(out)


def accuracy_record(calls, num_tasks: int) -> dict:
  """Our results.json's accuracy entries from their ``evaluate`` calls.

  Args:
    calls: one ``(last, class_il, task_il)`` per call of their evaluate, in call
      order: the untrained ("random") model on every task; then per task t an
      evaluation of task t alone before training it (``last=True``, t > 0) and
      one of tasks 0..t after it. ``class_il`` / ``task_il``: percent per task
      evaluated. A run cut short has fewer calls; its rows stop there.
    num_tasks: T.

  Returns:
    ``{"class_il": {"matrix", "before", "final_average"}, "task_il": {...},
    "metrics": {protocol: dynamos_jax.metrics.summarize(...)}}``: matrix rows
    0..t (row 0 the untrained model, row i after task i-1; tasks not yet seen
    None), ``before[j]`` the accuracy on task j just before training it
    (``before[0]`` the untrained model's).

  Raises:
    ValueError: the calls are not in that order.
  """
  if not calls or calls[0][0] or len(calls[0][1]) != num_tasks:
    raise ValueError(f"the first evaluation must be the untrained model on all {num_tasks} tasks")
  out = {}
  for p, protocol in ((1, "class_il"), (2, "task_il")):
    matrix = [[float(a) for a in calls[0][p]]]
    before = [float(calls[0][p][0])]
    for last, *accs in calls[1:]:
      acc = [float(a) for a in accs[p - 1]]
      task = len(matrix) - 1  # the task trained next
      if last:
        if len(acc) != 1 or task == 0 or len(before) != task:
          raise ValueError(f"unexpected 'before' evaluation ahead of task {task}")
        before.append(acc[0])
      else:
        if len(acc) != task + 1 or len(before) != task + 1:
          raise ValueError(f"evaluation after task {task} covers {len(acc)} tasks")
        matrix.append(acc + [None] * (num_tasks - len(acc)))
    out[protocol] = {
      "matrix": matrix,
      "before": before,
      "final_average": metrics.final_average(matrix),
    }
  complete = len(out["class_il"]["matrix"]) == num_tasks + 1
  out["metrics"] = {
    protocol: (
      metrics.summarize(out[protocol]["matrix"], out[protocol]["before"])
      if complete
      else {"final_average": out[protocol]["final_average"]}
    )
    for protocol in ("class_il", "task_il")
  }
  return out


def gcl_record(accuracy: float, correct: list[int], total: list[int]) -> dict:
  """Our MNIST-360 results.json entries from their final GCL evaluation.

  Args:
    accuracy: what their ``evaluate`` returned: correct / total over every test
      draw of all classes, in percent (sample-weighted; docs/dynamos.md#evaluation).
    correct, total: [K] per-class counts of the same draws (the driver's hook).

  Returns:
    ``{"gcl": {"accuracy"}, "metrics": {"gcl": {"accuracy"}}, "gcl_per_class":
    {"accuracy", "correct", "total", "matches_accuracy"}}``: the first two as ours
    writes them; per-class accuracy None for a class with no draw;
    ``matches_accuracy`` whether sum(correct) / sum(total) is their accuracy.

  Raises:
    ValueError: counts of different lengths, or a class right more often than drawn.
  """
  correct, total = [int(c) for c in correct], [int(t) for t in total]
  if len(correct) != len(total) or any(c < 0 or c > t for c, t in zip(correct, total)):
    raise ValueError(f"per-class counts disagree: correct {correct}, total {total}")
  accuracy = float(accuracy)
  pooled = 100.0 * sum(correct) / sum(total) if sum(total) else None
  return {
    "gcl": {"accuracy": accuracy},
    "metrics": {"gcl": {"accuracy": accuracy}},
    "gcl_per_class": {
      "accuracy": [100.0 * c / t if t else None for c, t in zip(correct, total)],
      "correct": correct,
      "total": total,
      "matches_accuracy": pooled is not None and abs(pooled - accuracy) < 1e-9,
    },
  }


# The BatchNorm re-estimation of --bn_from_buffer: as the diagnostic on our final states.
BN_BATCHES, BN_SIZE, BN_SEED = 100, 32, 0


def bn_draws(
  filled: int, batches: int = BN_BATCHES, size: int = BN_SIZE, seed: int = BN_SEED
) -> list:
  """Buffer slots of each re-estimation forward: ``size`` distinct of the ``filled`` slots.

  One generator, ``np.random.default_rng(seed)``, for all ``batches`` draws (each
  ``choice(filled, size, replace=False)``), so the draws differ from one forward
  to the next and are the same on both sides for the same ``filled``.

  Raises:
    ValueError: fewer filled slots than ``size`` (a draw without replacement).
  """
  if filled < size:
    raise ValueError(
      f"{filled} filled buffer slots: too few for draws of {size} without replacement"
    )
  rng = np.random.default_rng(seed)
  return [rng.choice(filled, size, replace=False) for _ in range(batches)]


def bn_from_buffer_record(evaluated: dict, replayed: dict, reestimated: dict, **extra) -> dict:
  """results.json's ``gcl_bn_from_buffer``: the re-estimated model's evaluation beside theirs.

  Args:
    evaluated: ``gcl_record`` of their own final evaluation.
    replayed: ``gcl_record`` of the unchanged model over the same recorded test
      batches (a check: it should be ``evaluated`` again).
    reestimated: ``gcl_record`` of the model with BN statistics from the buffer,
      over the same batches.
    extra: what else to keep (the draw rule, BN modules, statistics' change).

  Returns:
    ``{"accuracy", "per_class", "delta", "per_class_delta", "replay_matches", **extra}``:
    the re-estimated accuracy and per-class record, and its differences from
    theirs (percentage points; None for a class without draws).
  """
  before = evaluated["gcl_per_class"]["accuracy"]
  after = reestimated["gcl_per_class"]["accuracy"]
  replay_matches = (
    replayed["gcl_per_class"]["correct"] == evaluated["gcl_per_class"]["correct"]
    and replayed["gcl_per_class"]["total"] == evaluated["gcl_per_class"]["total"]
    and replayed["gcl"]["accuracy"] == evaluated["gcl"]["accuracy"]
  )
  return {
    "accuracy": reestimated["gcl"]["accuracy"],
    "per_class": reestimated["gcl_per_class"],
    "delta": reestimated["gcl"]["accuracy"] - evaluated["gcl"]["accuracy"],
    "per_class_delta": [None if a is None or b is None else a - b for b, a in zip(before, after)],
    "replay_matches": replay_matches,
    **extra,
  }


class StepLog:
  """Their per-step losses as our log: means over chunks of ``every`` steps.

  A chunk also ends at a task or phase ("warmup" / "main") change, as our
  chunks do. Our Dynamos logs a prototype term of 0 when fewer than 3 samples
  are right (theirs leaves the key out), so a missing prototype key counts 0 in
  a step whose pass ran; every other metric is averaged over the steps that
  have it.
  """

  def __init__(self, every: int):
    self.every = every
    self.entries = []
    self._steps = []
    self._where = None

  def add(self, step: int, task: int, phase: str, values: dict):
    """values: their loss dict plus any of our names (keep_ratio_l, train_accuracy, ...)."""
    if self._where is not None and self._where != (task, phase):
      self.flush()
    self._where = (task, phase)
    row = {LOSS_NAMES.get(k, k): float(v) for k, v in values.items()}
    if phase == "main":
      row.setdefault("prototype", 0.0)
      if "replay_ce" in row:
        row.setdefault("replay_prototype", 0.0)
    self._steps.append((step, row))
    if len(self._steps) == self.every:
      self.flush()

  def flush(self):
    if not self._steps:
      return
    task, phase = self._where
    entry = {"step": self._steps[-1][0], "task": task, "phase": phase}
    names = sorted({k for _, row in self._steps for k in row})
    for name in names:
      entry[name] = float(np.mean([row[name] for _, row in self._steps if name in row]))
    self.entries.append(entry)
    self._steps = []


def seed_table(records: list[dict]) -> str:
  """A per-seed table of results.json records (ours or theirs) and the mean +- std (ddof 1).

  Per seed: the class-IL mean over the seen tasks after each task (the row
  means, i.e. the figure their log prints after each task), then the final
  task-IL average and class-IL forgetting.
  """
  tasks = len(records[0]["class_il"]["matrix"]) - 1
  head = ["seed"] + [f"cil@{t}" for t in range(1, tasks + 1)] + ["til", "forget"]
  lines = ["  ".join(f"{h:>7}" for h in head)]
  for r in records:
    rows = r["class_il"]["matrix"][1:]
    means = [metrics.final_average(r["class_il"]["matrix"][: i + 2]) for i in range(len(rows))]
    forget = r["metrics"]["class_il"].get("forgetting")
    cells = (
      [str(r.get("seed", "?"))]
      + [f"{m:.2f}" for m in means]
      + [f"{r['task_il']['final_average']:.2f}", "-" if forget is None else f"{forget:.2f}"]
    )
    lines.append("  ".join(f"{c:>7}" for c in cells))
  summary = metrics.over_seeds(records)
  parts = []
  for protocol, name in (("class_il", "class-IL"), ("task_il", "task-IL")):
    s = summary[protocol]["final_average"]
    parts.append(f"{name} {s['mean']:.2f} +- {s['std']:.2f}")
  lines.append(f"{len(records)} seeds: " + ", ".join(parts) + " (std over seeds, ddof 1)")
  return "\n".join(lines)


def gcl_seed_table(records: list[dict]) -> str:
  """A per-seed table of MNIST-360 results.json records (ours or theirs) and the mean +- std.

  Per seed: the GCL accuracy, the accuracy with BN statistics from the buffer
  where a record has it (``bn``: theirs run with --bn_from_buffer), then the
  per-class accuracies where the record has them (theirs, from the driver; ours
  writes none).
  """
  classes = max((len(r.get("gcl_per_class", {}).get("accuracy", [])) for r in records), default=0)
  bn = [r["gcl_bn_from_buffer"]["accuracy"] for r in records if "gcl_bn_from_buffer" in r]
  head = ["seed", "gcl"] + ["bn"] * bool(bn) + [f"c{k}" for k in range(classes)]
  lines = ["  ".join(f"{h:>6}" for h in head)]
  for r in records:
    per_class = r.get("gcl_per_class", {}).get("accuracy", [])
    cells = [str(r.get("seed", "?")), f"{r['gcl']['accuracy']:.2f}"]
    if bn:
      cells.append(
        f"{r['gcl_bn_from_buffer']['accuracy']:.2f}" if "gcl_bn_from_buffer" in r else "-"
      )
    cells += ["-" if a is None else f"{a:.1f}" for a in per_class] + ["-"] * (
      classes - len(per_class)
    )
    lines.append("  ".join(f"{c:>6}" for c in cells))
  s = metrics.over_seeds(records)["gcl"]["accuracy"]
  lines.append(
    f"{len(records)} seeds: GCL {s['mean']:.2f} +- {s['std']:.2f} (std over seeds, ddof 1)"
  )
  if len(bn) > 1:
    lines.append(
      f"{len(bn)} seeds: GCL with BN from the buffer {np.mean(bn):.2f} +- {np.std(bn, ddof=1):.2f}"
    )
  return "\n".join(lines)
