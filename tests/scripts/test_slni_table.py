"""reproduce/slni_table.py: the table's numbers from results.json, the commands, bad input.

No training: the results.json files are written here with hand-chosen
accuracy matrices, and the expected figures are computed by hand below.
"""

import json
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "reproduce"))
import slni_table  # noqa: E402

SLNI = {
  "regularizer": "slnid",
  "activation": "relu",
  "discount": "product",
  "selection": "last",
  "weight_decay": 0.0,
}


def _results(finals, forgetting, slni=None, seeds=(0, 1)):
  """A results.json with the given final rows (one per seed) and forgetting values."""
  runs = [
    {
      "seed": s,
      "class_il": {"matrix": [[10.0] * 3, [50.0, 0.0, 0.0], final]},
      "metrics": {"class_il": {"forgetting": f}},
    }
    for s, final, f in zip(seeds, finals, forgetting)
  ]
  return {
    "config": {"slni": dict(slni or SLNI), "train": {"max_steps_per_task": 0}},
    "seeds": list(seeds),
    "runs": runs,
    "train": {"seconds": 99.6},
  }


def _write(tmp_path, name, results):
  os.makedirs(tmp_path / name)
  with open(tmp_path / name / "results.json", "w") as f:
    json.dump(results, f)


def test_report_computes_mean_std_per_task(tmp_path, capsys):
  # Seed 0 averages (90+93+96)/3 = 93, seed 1 (94+95+96)/3 = 95: mean 94, std
  # (ddof 1) sqrt(((93-94)^2 + (95-94)^2) / 1) = 1.41; per task 92 / 94 / 96.
  _write(tmp_path, "mas128_slnid", _results([[90.0, 93.0, 96.0], [94.0, 95.0, 96.0]], [1.0, 2.0]))
  code = slni_table.main(
    [
      "--report_only",
      f"--workdir={tmp_path}",
      "--seeds=0,1",
      "--settings=mas128:slnid,mas128:no_reg",
    ]
  )
  out = capsys.readouterr().out
  assert code == 0
  line = [x for x in out.splitlines() if x.startswith("| mas128 slnid")]
  assert line == [
    "| mas128 slnid | 94.00 +- 1.41 | 93.00 / 95.00 | 92.00 / 94.00 / 96.00 | 1.50 | 100 s |"
  ]
  assert "no_reg" not in out  # not run, so not in a report-only table


def test_report_refuses_another_setting(tmp_path, capsys):
  _write(
    tmp_path,
    "mas128_slnid",
    _results([[90.0] * 3, [90.0] * 3], [0.0, 0.0], slni=dict(SLNI, discount="min")),
  )
  code = slni_table.main(
    ["--report_only", f"--workdir={tmp_path}", "--seeds=0,1", "--settings=mas128:slnid"]
  )
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1 and "another setting" in err


def test_a_best_epoch_run_saved_before_the_rename_is_the_best_setting(tmp_path, capsys):
  """A results.json of the test-set rule saved as ``best_epoch`` (before the validation
  split) is the @best setting, ``best_test_epoch``, not another one."""
  old = dict(SLNI, selection="best_epoch")
  _write(tmp_path, "mas128_slnid_best", _results([[90.0] * 3, [92.0] * 3], [0.0, 0.0], old))
  code = slni_table.main(
    ["--report_only", f"--workdir={tmp_path}", "--seeds=0,1", "--settings=mas128:slnid@best"]
  )
  assert code == 0 and "| mas128 slnid (best epoch) | 91.00 +- 1.41 |" in capsys.readouterr().out


@pytest.mark.parametrize(
  "argv, words",
  [
    (["--settings=mas32:slnid"], "DEMO:VARIANT"),
    (["--settings=mas128:slnid@worst"], "DEMO:VARIANT"),
    (["--seeds=0,x"], "integers"),
    (["--seeds=1,1"], "distinct"),
    (["--source=web"], "tfds"),
    (["--source=files", "--path=/no/such/mnist.pkl.gz"], "does not exist"),
    (["--l2_wd=-1", "--source=bundled"], ">= 0"),
  ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, words):
  code = slni_table.main([f"--workdir={tmp_path}"] + argv)
  err = capsys.readouterr().err
  assert code == 2
  assert len(err.strip().splitlines()) == 1 and words in err


def test_variants_set_the_documented_keys():
  assert slni_table.slni_overrides("slnid_min", False, 1e-5, 1e-5) == {
    "regularizer": "slnid",
    "activation": "relu",
    "discount": "min",
    "selection": "last",
  }
  assert slni_table.slni_overrides("lwta", True, 1e-5, 1e-5) == {
    "regularizer": "no_reg",
    "activation": "lwta",
    "discount": "product",
    "selection": "best_test_epoch",
  }
  assert slni_table.slni_overrides("l1_param", False, 3e-4, 7e-6)["weight_decay"] == 7e-6
  assert slni_table.slni_overrides("l2_wd", False, 3e-4, 7e-6)["weight_decay"] == 3e-4


def test_command_of_a_short_run():
  args = slni_table.parse(["--workdir=/tmp/w", "--short", "--source=bundled"])
  cmd = slni_table.command("ewc64", {"regularizer": "decov"}, [0, 2], args, "/tmp/w/x")
  assert cmd[cmd.index("-m") + 1] == "dynamos_jax.run"
  assert cmd[3].endswith("configs/permuted_mnist.py:ewc64")
  for flag in (
    "--config.seeds=0,2",
    "--config.slni.regularizer=decov",
    "--config.epochs=1",
    "--config.data.source=bundled",
    "--workdir=/tmp/w/x",
    f"--config.train.max_steps_per_task={slni_table.SHORT_STEPS}",
  ):
    assert flag in cmd
