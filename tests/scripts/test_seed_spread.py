"""reproduce/seed_spread.py: the per-seed trajectories and the variance comparison."""

import json

import numpy as np
import pytest

from conftest import load_script

seed_spread = load_script("seed_spread", "reproduce", "seed_spread.py")


def test_trajectory_is_the_mean_over_seen_tasks_with_or_without_row_zero():
  with_zero = [[10.0, 10.0], [90.0, None], [80.0, 95.0]]
  assert seed_spread.trajectory(with_zero, 2) == [90.0, 87.5]
  assert seed_spread.trajectory(with_zero[1:], 2) == [90.0, 87.5]


def test_variance_ratio_and_f_test():
  # F(2, 2) has CDF x / (1 + x): a ratio of 16 gives p = 2 / 17.
  ratio, p = seed_spread.variance_test([90.0, 92.0, 94.0], [95.0, 95.5, 96.0])
  assert ratio == pytest.approx(16.0) and p == pytest.approx(2 / 17)


def test_table_from_files(tmp_path, capsys):
  ours = {
    "runs": [
      {
        "seed": s,
        "class_il": {"matrix": [[10, 10], [99, None], [v, 98]]},
        "task_il": {"matrix": [[50, 50], [99, None], [99, 99]]},
        "log": [
          {"task": 1, "keep_ratio_1": 0.9, "loss": 1.0},
          {"task": 2, "keep_ratio_1": 0.6, "loss": 2.0},
          {"task": 2, "keep_ratio_1": 0.8, "loss": 4.0},
        ],
      }
      for s, v in ((0, 90.0), (1, 94.0))
    ]
  }
  (tmp_path / "ours.json").write_text(json.dumps(ours))
  for s, v in ((0, 95.0), (1, 96.0)):
    (tmp_path / f"ref{s}.json").write_text(json.dumps({"seed": s, "class_il": [[99, 0], [v, 97]]}))
  assert (
    seed_spread.main(
      [
        f"--ours={tmp_path / 'ours.json'}",
        f"--theirs={tmp_path / 'ref0.json'}",
        f"--theirs={tmp_path / 'ref1.json'}",
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert "| ours | 0 | 99.00 | 94.00 | 99.00 |" in out
  assert f"ours: final 95.00 +- {np.std([94.0, 96.0], ddof=1):.2f} over 2 seeds" in out
  assert "theirs: final 96.25 +- 0.35" in out  # (95 + 97) / 2 and (96 + 97) / 2
  assert "ours seed 0, last task: keep_ratio_1 0.700, loss 3.000" in out


def test_bad_input_is_one_line(tmp_path, capsys):
  (tmp_path / "bad.json").write_text("{")
  assert seed_spread.main([f"--ours={tmp_path / 'bad.json'}"]) == 2
  assert seed_spread.main([]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and all(line.startswith("error: ") for line in err)
