"""Which setting a sweep names best, and on which split (docs/running.md#sweeps).

A sweep with a validation split ranks on it; without one it names no best unless
``train.rank_on=test`` asks for the test set. Scripted run records, so the ranking
is checked on figures chosen to disagree; one tiny real sweep checks the wiring.
"""

import json

import numpy as np
import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import reporting, trainer
from dynamos_jax import sweep as sweep_lib
from dynamos_jax.errors import ConfigError
from dynamos_jax.run import main as run_main

from conftest import run_command

SWEEP = sweep_lib.Sweep(keys=("lr",), settings=({"lr": 0.05}, {"lr": 0.1}))
A, B = SWEEP.labels
RANKED_BY = ("class_il", "final_average")


def _runs(test: dict[str, float], valid: dict[str, float] | None) -> list[dict]:
  """Two seeds per setting: class-IL final average ``test[label] + seed`` on the test
  set and ``valid[label] + seed`` on the validation split (none when ``valid`` is None)."""
  runs = []
  for label in SWEEP.labels:
    for seed in (0, 1):
      run = {"seed": seed, "label": label}
      run["metrics"] = {"class_il": {"final_average": test[label] + seed}}
      if valid is not None:
        run["validation_metrics"] = {"class_il": {"final_average": valid[label] + seed}}
      runs.append(run)
  return runs


def _results(record: dict, validation: float = 0.0) -> dict:
  """The part of a sweep's results.json that format_results reads."""
  return {"config": {"data": {"validation": validation}}, "seeds": [0, 1], "sweep": record}


def test_the_validation_split_chooses_the_best_setting():
  # The test set favours A, the validation split B: the validation split decides.
  runs = _runs(test={A: 80.0, B: 70.0}, valid={A: 60.0, B: 65.0})
  record = reporting.sweep_record(SWEEP, runs, RANKED_BY, "validation")
  assert record["best"] == B and record["ranked_on"] == "validation"
  # Only the validation figures change: so does the choice.
  flipped = _runs(test={A: 80.0, B: 70.0}, valid={A: 65.0, B: 60.0})
  assert reporting.sweep_record(SWEEP, flipped, RANKED_BY, "validation")["best"] == A
  out = reporting.format_results(_results(record, validation=0.2)).splitlines()
  assert out[0] == "test set: mean +- std over seeds 0, 1"
  assert "validation split (data.validation=0.2): mean +- std over seeds 0, 1" in out
  assert out[-1] == (
    f"best setting by class-IL final avg on the validation split: {B} "
    "(validation 65.50 +- 0.71; test 70.50 +- 0.71)"
  )
  # Asked for the test set, a run with a split ranks on the test set, and says so.
  on_test = reporting.sweep_record(SWEEP, runs, RANKED_BY, "test")
  assert on_test["best"] == A and on_test["ranked_on"] == "test"
  last = reporting.format_results(_results(on_test, validation=0.2)).splitlines()[-1]
  assert last == f"best setting by class-IL final avg on the test set: {A} (80.50 +- 0.71)"


def test_without_a_split_no_best_is_named_and_the_hint_is_printed():
  record = reporting.sweep_record(SWEEP, _runs({A: 80.0, B: 70.0}, None), RANKED_BY, "validation")
  assert record["best"] is None and record["ranked_on"] is None
  out = reporting.format_results(_results(record)).splitlines()
  rows = {line.split("|")[0].strip(): line for line in out if "|" in line}
  assert "80.50 +-  0.71" in rows[A] and "70.50 +-  0.71" in rows[B]  # Listed all the same.
  assert out[-1] == reporting.NO_BEST
  assert "--config.data.validation=0.1" in out[-1] and "--config.train.rank_on=test" in out[-1]
  assert not any(line.startswith("best setting") for line in out)


def test_rank_on_test_names_the_test_sets_best():
  record = reporting.sweep_record(SWEEP, _runs({A: 70.0, B: 80.0}, None), RANKED_BY, "test")
  assert record["best"] == B and record["ranked_on"] == "test"
  expected = f"best setting by class-IL final avg on the test set: {B} (80.50 +- 0.71)"
  assert reporting.format_results(_results(record)).splitlines()[-1] == expected
  # A results.json written before ranked_on was recorded ranked on the test set.
  del record["ranked_on"]
  assert reporting.format_results(_results(record)).splitlines()[-1] == expected


def test_a_bad_rank_on_is_one_line(tiny_config, tmp_path):
  tiny_config.train.rank_on = "valid"
  with pytest.raises(ConfigError) as error:
    config_lib.validate(tiny_config)
  assert "unknown train.rank_on 'valid'" in str(error.value) and "\n" not in str(error.value)
  code, stderr = run_command(
    run_main,
    ["--config=configs/quickstart.py", "--config.train.rank_on=best", f"--workdir={tmp_path}"],
  )
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert code == 2 and len(errors) == 1 and "train.rank_on" in errors[0], stderr


def test_a_sweep_with_a_validation_split_ranks_on_it(tiny_data, tiny_config, tmp_path, capsys):
  """A tiny real sweep: the validation split's ranking reaches results.json and the
  table; the same directory run again with rank_on=test re-ranks without training."""
  config = tiny_config
  config.method, config.epochs, config.sweep = "anchored", 1, "anchored.lr=0.01,0.5"
  config.train.max_steps_per_task, config.train.max_tasks = 2, 2
  config.train.seed_strategy, config.data.validation = "unroll", 0.2
  results = trainer.train_and_evaluate(config, str(tmp_path))
  record = results["sweep"]
  # Independently of the library's metrics: the mean of each run's last validation row.
  valid = {
    r["label"]: float(np.mean(r["validation"]["class_il"]["matrix"][-1][:2]))
    for r in results["runs"]
  }
  assert record["ranked_on"] == "validation"
  assert record["best"] == max(record["settings"], key=lambda label: valid[label])
  assert json.loads((tmp_path / "results.json").read_text())["sweep"] == record
  out = capsys.readouterr().out
  assert f"on the validation split: {record['best']} (validation " in out
  # rank_on changes no trained number, so the finished sweep resumes (a key that could
  # change results would stop it) and is re-ranked on the same runs.
  config.train.rank_on = "test"
  again = trainer.train_and_evaluate(config, str(tmp_path))
  assert again["runs"] == results["runs"] and again["sweep"]["ranked_on"] == "test"
  test = {
    label: s["summary"]["class_il"]["final_average"]["mean"]
    for label, s in record["settings"].items()
  }
  assert again["sweep"]["best"] == max(test, key=test.get)
