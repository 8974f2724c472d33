"""benchmarks/readme_tables.py: its table format and its one-line errors."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import readme_tables  # noqa: E402

from dynamos_jax import metrics  # noqa: E402


def _run(final, matrix_last):
  matrix = [[10.0, 10.0], [90.0, None], matrix_last]
  return {"metrics": {"class_il": {**metrics.summarize(matrix, [10.0, 5.0]),
                                   "final_average": final},
                      "task_il": metrics.summarize(matrix, [10.0, 5.0])},
          "train": {"seconds": 10.0}}


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
