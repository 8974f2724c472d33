"""reproduce/readme_tables.py: its table format and its one-line errors."""

import os
import sys

import numpy as np
from scipy import stats

from dynamos_jax import metrics

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "reproduce"))
import readme_tables  # noqa: E402


def _run(final, matrix_last):
  matrix = [[10.0, 10.0], [90.0, None], matrix_last]
  return {
    "metrics": {
      "class_il": {**metrics.summarize(matrix, [10.0, 5.0]), "final_average": final},
      "task_il": metrics.summarize(matrix, [10.0, 5.0]),
    },
    "train": {"seconds": 10.0},
  }


def test_rows_are_mean_and_std_over_seeds_with_forgetting():
  runs = {"er": {0: _run(80.0, [70.0, 90.0]), 1: _run(90.0, [80.0, 100.0])}}
  from dynamos_jax import compare

  out = {"summary": compare.summarize(runs), "runs": runs}
  lines = readme_tables.format_table("quickstart", "All", [("quickstart.py", out)], [0, 1])
  row = next(line for line in lines if line.startswith("| er "))
  # final 85 +- 7.07; forgetting (90 - 70, 90 - 80) -> 15 +- 7.07; per seed 80 / 90.
  assert row.startswith("| er | quickstart.py | 85.00 +- 7.07 | 15.00 +- 7.07 |")
  assert row.endswith("| 80.00 / 90.00 |")
  assert "10 s of wall time a seed" in lines[-1]


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
  assert readme_tables.main(["--tables=nope", f"--workdir={tmp_path}"]) == 2
  assert "unknown table 'nope'" in capsys.readouterr().err
  assert readme_tables.main(["--tables=seq_mnist", f"--workdir={tmp_path}"]) == 2
  assert "needs full MNIST" in capsys.readouterr().err
  assert readme_tables.main(["--seeds=0,x", f"--workdir={tmp_path}"]) == 2
  assert "--seeds must be integers" in capsys.readouterr().err
  assert (
    readme_tables.main(["--tables=mnist360", "--buffers=500,300", f"--workdir={tmp_path}"]) == 2
  )
  assert "--buffers must be some of" in capsys.readouterr().err


def _gcl(values):
  return {
    "gcl": {"accuracy": {"mean": float(sum(values) / len(values)), "std": 0.0, "values": values}}
  }


def test_gcl_tables_say_per_buffer_whether_dynamos_beats_the_baseline():
  dynamos, baseline = [28.0, 52.0, 46.0], [62.0, 58.0, 61.0]
  lost = {
    "summary": {"dynamos": _gcl(dynamos), "baseline": _gcl(baseline)},
    "runs": {"dynamos": {0: {"train": {"seconds": 1.0}}}},
  }
  won = {
    "summary": {"dynamos": _gcl([70.0, 72.0]), "baseline": _gcl([65.0, 64.0])},
    "runs": {"dynamos": {0: {"train": {"seconds": 1.0}}}},
  }
  lines = readme_tables.format_table(
    "mnist360", "M", [("mnist360.py:100", lost), ("mnist360.py:500", won)], [0, 1, 2]
  )
  first = next(line for line in lines if line.startswith("- mnist360.py:100:"))
  second = next(line for line in lines if line.startswith("- mnist360.py:500:"))
  # Welch's t by hand: means 42 and 60.33, sample variances 156 and 4.33 over 3 seeds each.
  v1, v2 = np.var(dynamos, ddof=1) / 3, np.var(baseline, ddof=1) / 3
  t = (np.mean(dynamos) - np.mean(baseline)) / np.sqrt(v1 + v2)
  dof = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 2)
  p = 2 * stats.t.sf(abs(t), dof)
  assert f"= {np.mean(dynamos) - np.mean(baseline):+.2f} points" in first
  assert f"p = {p:.3f}" in first and first.endswith("the claim does not hold")
  assert "= +6.50 points" in second and second.endswith("the claim holds")


def test_full_tables_show_progress_and_short_ones_do_not(tmp_path):
  args, _, _ = readme_tables.parse(["--tables=quickstart", f"--workdir={tmp_path}"])
  assert readme_tables.load_config("quickstart.py", args).train.progress
  args, _, _ = readme_tables.parse(["--tables=quickstart", "--short", f"--workdir={tmp_path}"])
  short = readme_tables.load_config("quickstart.py", args)
  assert not short.train.progress and short.train.max_steps_per_task == readme_tables.SHORT_STEPS
