"""The comparison command: every (method, seed) once, finished runs skipped, the summary."""

import json

import numpy as np
import pytest

from dynamos_jax import compare, trainer
from dynamos_jax.errors import InputError

from conftest import ROOT


def _results(final, forgetting):
  protocol = {
    "final_average": final,
    "forgetting": forgetting,
    "backward_transfer": None if forgetting is None else -forgetting,
    "forward_transfer": 0.0,
  }
  return {"metrics": {"class_il": protocol, "task_il": dict(protocol)}}


def test_summary_is_mean_and_sample_std_over_seeds():
  runs = {"a": {0: _results(80.0, 10.0), 1: _results(90.0, 20.0)}, "b": {0: _results(50.0, None)}}
  summary = compare.summarize(runs)
  entry = summary["a"]["class_il"]["final_average"]
  assert entry["mean"] == pytest.approx(85.0)
  assert entry["std"] == pytest.approx(np.std([80.0, 90.0], ddof=1))
  assert summary["b"]["class_il"]["forgetting"]["mean"] is None  # undefined stays undefined
  assert summary["b"]["class_il"]["final_average"]["std"] == 0.0
  table = compare.format_summary(summary, [0, 1])
  assert "85.00 +-  7.07" in table


def test_comparison_runs_each_pair_once_and_skips_finished(
  tiny_data, tiny_config, tmp_path, monkeypatch, capsys
):
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 2
  calls = []
  original = trainer.train_and_evaluate
  monkeypatch.setattr(
    trainer,
    "train_and_evaluate",
    lambda c, d: calls.append((c.method, c.seeds or c.seed)) or original(c, d),
  )
  out = compare.run_comparison(tiny_config, ["sgd", "er"], [0, 1], str(tmp_path))
  # Each method's seeds in one program.
  assert sorted(calls) == [("er", "0,1"), ("sgd", "0,1")]
  on_disk = json.loads((tmp_path / "comparison.json").read_text())
  assert on_disk["summary"] == json.loads(json.dumps(out["summary"]))
  finals = [out["runs"]["er"][str(s)]["class_il"]["final_average"] for s in (0, 1)]
  assert out["summary"]["er"]["class_il"]["final_average"]["mean"] == pytest.approx(np.mean(finals))
  assert (tmp_path / "comparison.png").stat().st_size > 0
  assert "sgd" in capsys.readouterr().out

  calls.clear()
  again = compare.run_comparison(tiny_config, ["sgd", "er"], [0, 1], str(tmp_path))
  assert calls == []  # everything was finished, the seeds trained together included
  assert again["summary"] == out["summary"]
  # Trained one at a time, the seeds' accuracies are the same (unrolled seeds on CPU).
  alone = compare.run_comparison(
    tiny_config, ["er"], [0, 1], str(tmp_path / "alone"), one_program=False
  )
  assert sorted(calls) == [("er", 0), ("er", 1)]
  for seed in ("0", "1"):
    for protocol in ("class_il", "task_il"):
      assert (
        alone["runs"]["er"][seed][protocol]["matrix"] == out["runs"]["er"][seed][protocol]["matrix"]
      )
  calls.clear()
  tiny_config.lr = 0.01  # a different config is not "finished"
  compare.run_comparison(tiny_config, ["sgd"], [0], str(tmp_path / "other"))
  assert calls == [("sgd", 0)]
  tiny_config.seeds = "0,1"
  with pytest.raises(InputError, match="drop --config.seeds"):
    compare.run_comparison(tiny_config, ["sgd"], [0], str(tmp_path / "other"))


def test_a_bad_method_fails_before_anything_trains(tiny_data, tiny_config, tmp_path):
  from dynamos_jax.errors import ConfigError

  with pytest.raises(ConfigError, match="unknown method 'ewc'"):
    compare.run_comparison(tiny_config, ["sgd", "ewc"], [0], str(tmp_path))
  assert not (tmp_path / "sgd").exists()


def test_command_line_bad_seeds_is_one_line(tmp_path):
  import subprocess
  import sys

  root = ROOT
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "dynamos_jax.compare",
      "--config=configs/quickstart.py",
      "--methods=sgd",
      "--seeds=0,x",
      f"--workdir={tmp_path}",
    ],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    "error: --seeds must be integers separated by commas (got 0,x)"
  ]
