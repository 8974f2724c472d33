"""After each task of a DGM run: how much of D's class-IL accuracy is its BatchNorm statistics?

  python reproduce/dgm_bn_diagnostic.py --workdir=RUN [--per_class=1000] [--out=FILE.json]

D is evaluated with the running statistics that training leaves; every train-mode forward
updates them, and the last ones of a task are the WGAN-GP and G steps' forwards of the
current class's real images and G's fakes (docs/dgm.md#batchnorm-statistics). For each
task t of a one-seed DGM run whose checkpoint at that task's end is kept
(``--config.checkpoint.keep`` at least the number of tasks plus a few), D after task t is
evaluated on the test images of classes 0..t three ways, its parameters untouched:

- ``running``: as trained (the run's own class-IL row unless it ran with
  ``dgm.d_statistics=replay``; the row the run reported is checked against results.json);
- ``real``: BN statistics of ``--per_class`` real training images of each seen class in
  one batch (a diagnostic that uses real past data, which the method never keeps);
- ``replayed``: what ``--config.dgm.d_statistics=replay`` gives D at that point (the
  statistics of the current class's first ``--per_class`` real training images and as many
  of G's samples of each past class; ``methods/dgm/statistics.py``).

Per way: A_t (the mean over the seen classes' accuracies, as the run reports it), the
per-class accuracies and how many test images D gives each class. Bad input: one line,
exit 2.
"""

import argparse
import dataclasses
import json
import os
import sys

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dynamos_jax import trainer  # noqa: E402  (the path above first)
from dynamos_jax.checkpoint import Checkpointer  # noqa: E402
from dynamos_jax.errors import InputError  # noqa: E402
from dynamos_jax.methods.dgm import statistics  # noqa: E402
from dynamos_jax.methods.dgm.discriminator import to_unit  # noqa: E402

WAYS = ("running", "real", "replayed")


def scores(method, learner, stats, images, labels: np.ndarray, t: int) -> dict:
  """A_t, per-class accuracy and predicted counts over classes 0..t of D with ``stats``."""
  _, logits, _ = method._d_apply(learner.d, stats, to_unit(images), False)
  predicted = np.asarray(jnp.argmax(method._seen_logits(logits, t), -1))
  per_class = [100.0 * float(np.mean(predicted[labels == c] == c)) for c in range(t + 1)]
  return {
    "A": float(np.mean(per_class)),
    "per_class": per_class,
    "predicted_counts": np.bincount(predicted, minlength=t + 1)[: t + 1].tolist(),
  }


def task_end_steps(progress: dict) -> list[int]:
  """The total step at the end of each finished task, from the run's log."""
  ends = {}
  for entry in progress["log"]:
    ends[entry["task"]] = entry["step"]
  return [ends[k] for k in sorted(ends)][: len(progress["class_il"]) - 1]


def diagnose(workdir: str, per_class: int = 1000) -> list[dict]:
  """One record per finished task (see the module docstring)."""
  exp, _, progress = trainer.restore_run(workdir)
  if exp.method.name != "dgm" or exp.method.classes_per_task != 1:
    raise InputError(f"{workdir} is a run of {exp.method.name}: give a DGM run of one class a task")
  benchmark, method = exp.benchmark, exp.method
  checkpoints = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"), 1_000_000)
  test_images, test_labels = benchmark.test_set()
  train_images = np.asarray(benchmark.data.train_images)
  rng = np.random.default_rng(0)
  records = []
  for t, step in enumerate(task_end_steps(progress)):
    restored = checkpoints.restore_latest(exp.initial_state(), at_most=step)
    if restored is None or restored[1]["total_steps"] != step:
      raise InputError(
        f"no checkpoint at the end of task {t + 1} (step {step}) in {checkpoints.directory}: "
        "run with --config.checkpoint.keep larger than the number of tasks"
      )
    learner = restored[0].learner
    rows = np.flatnonzero(test_labels <= t)
    images, labels = test_images[rows], test_labels[rows]
    # The training images (the hold-out excluded) of each seen class.
    parts = benchmark.train_parts[: t + 1]
    draw = [rng.choice(ix, min(per_class, len(ix)), replace=False) for ix in parts]
    real = to_unit(jnp.asarray(train_images[np.concatenate(draw)]))
    # What dgm.d_statistics=replay gives D at this task's end (the same draws).
    option = dataclasses.replace(method, d_statistics="replay", statistics_images=per_class)
    stats = {
      "running": learner.d_stats,
      "real": statistics.batch_statistics(method, learner.d, learner.d_stats, real),
      "replayed": statistics.refresh(option, learner, exp.task_data(t)).eval_stats,
    }
    record = {"task": t + 1, "step": step}
    for way in WAYS:
      record[way] = scores(method, learner, stats[way], images, labels, t)
    # The run reported D with its own statistics: the running ones, or with
    # dgm.d_statistics=replay those it re-estimated (its "replayed", other draws).
    used = scores(method, learner, learner.eval_stats or learner.d_stats, images, labels, t)
    logged = progress["class_il"][t + 1][: t + 1]
    if not np.allclose(used["per_class"], logged, atol=1e-3):
      raise InputError(
        f"task {t + 1}: the restored D gives {used['per_class']}, the run "
        f"reported {logged}: is the checkpoint at step {step} the task's end?"
      )
    record["reported"] = used
    records.append(record)
  return records


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--per_class", type=int, default=1000)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  try:
    if args.per_class < 1:
      raise InputError(f"--per_class must be >= 1 (got {args.per_class})")
    records = diagnose(args.workdir, args.per_class)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print("task | " + " | ".join(f"A_t {w}" for w in WAYS) + " | predicted counts (running)")
  for r in records:
    cells = " | ".join(f"{r[w]['A']:6.2f}" for w in WAYS)
    print(f"{r['task']:4d} | {cells} | {r['running']['predicted_counts']}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(records, f, indent=1)
    print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
