"""Re-evaluation: ``python -m dynamos_jax.evaluate --workdir=DIR [--seed=N]``.

Restores the newest usable checkpoint of a run (finished or not) and
evaluates it, without training, on every task it has trained on; prints the
run's accuracy tables so far and the fresh evaluation (for MNIST-360, the
GCL accuracy). A multi-seed run: every seed, or the one of ``--seed``.
"""

from absl import app, logging
import numpy as np

from dynamos_jax.cli import SEED, fail, run_dir_from_flags
from dynamos_jax.errors import InputError


def evaluate_workdir(workdir: str, seed: int | None = None) -> dict | dict[int, dict]:
  """Evaluates the newest checkpoint in ``workdir``; returns the fresh rows and the step.

  A multi-seed run without ``seed``: ``{seed: that record}`` for every seed.
  """
  from dynamos_jax import trainer

  restored = trainer.restore_seeds(workdir, seed)
  out = {}
  for exp, state, progress in restored:
    if "seed" in progress:  # A seed's record of a multi-seed run.
      print(f"== seed {exp.seed}")
    out[exp.seed] = _evaluate(exp, state, progress)
  return out if len(out) > 1 else next(iter(out.values()))


def _evaluate(exp, state, progress) -> dict:
  from dynamos_jax import reporting
  from dynamos_jax.accuracy import seen_row

  label = f"step {progress['total_steps']}"
  scores = exp.evaluate(state, exp.phase_after(progress["next_chunk"]))
  if exp.gcl:
    accuracy = scores["gcl"]
    print(
      f"GCL accuracy of the checkpoint ({label}) evaluated now: {accuracy:.2f}%"
      + (f" (the run's: {progress['gcl']:.2f}%)" if "gcl" in progress else "")
    )
    return {"step": progress["total_steps"], "gcl": accuracy}
  seen = (
    exp.benchmark.seen_after[exp.chunks[progress["next_chunk"] - 1].task]
    if progress["next_chunk"]
    else 0
  )
  class_il, task_il = (seen_row(scores[p], seen) for p in ("class_il", "task_il"))
  for name, rows, fresh in (
    ("Class-IL", progress["class_il"], class_il),
    ("Task-IL", progress["task_il"], task_il),
  ):
    print(
      reporting.format_table(
        rows + [fresh],
        f"{name} accuracy (%): the run's rows, then the checkpoint ({label}) evaluated now",
        labels=[None] * len(rows) + [label],
      )
    )
  return {
    "step": progress["total_steps"],
    "tasks_seen": seen,
    "class_il": class_il,
    "task_il": task_il,
    "class_il_average": float(np.mean([v for v in class_il if v is not None])),
  }


def main(argv):
  workdir = run_dir_from_flags(argv)
  logging.set_verbosity(logging.WARNING)
  try:
    evaluate_workdir(workdir, SEED.value)
  except InputError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main)
