"""The command line: bad input gives one line and exit code 2; a real run end to end.

One subprocess per command shows what only a real process can (its exit status, no
traceback on stderr); the other messages run the command's main in this process
(conftest.run_command), which prints and exits as absl's app.run would.
"""

import json
import os
import subprocess
import sys

import pytest

from dynamos_jax import analyze, evaluate, run

from conftest import ROOT, run_command, subprocess_env

QUICK = ["--config=configs/quickstart.py"]
TINY = [
  "--config.train.max_steps_per_task=2",
  "--config.warmup.iterations=1",
  "--config.model.nf=8",
  "--config.model.mlp_reduction=4",
  "--config.train.progress=False",
]


def _run(args, tmp_path, module="run"):
  # Tiny models: XLA's optimisations cost more compile time than they save (as in conftest).
  env = subprocess_env()
  return subprocess.run(
    [
      sys.executable,
      "-m",
      f"dynamos_jax.{module}",
      *args,
      *([f"--workdir={tmp_path}"] if tmp_path else []),
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def _one_error_line(stderr: str, expected: str) -> None:
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], stderr


@pytest.mark.parametrize(
  "module, args, expected",
  [
    ("run", QUICK + ["--config.buffer_size=-1"], "buffer_size must be >= 0"),
    ("evaluate", ["--workdir=/no/such/run"], "no checkpoints in /no/such/run/checkpoints"),
    ("analyze", [], "--workdir is required"),
  ],
)
def test_each_command_exits_2_with_one_line_and_no_traceback(module, args, expected, tmp_path):
  result = _run(args, tmp_path / "run" if module == "run" else None, module)
  assert result.returncode == 2, result.stderr
  _one_error_line(result.stderr, expected)
  assert "Traceback" not in result.stderr
  if module != "run":  # the run-reading commands print nothing else
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize(
  "args, expected",
  [
    (QUICK + ["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (QUICK + ["--config.method=ewc"], "unknown method 'ewc'"),
    (QUICK + ["--config.buffer_size=-1"], "buffer_size must be >= 0"),
    (QUICK + ["--config.kr=0"], "kr must be in (0, 1]"),
    (QUICK + ["--config.kr=1.5"], "kr must be in (0, 1]"),
    (QUICK + ["--config.tau=0"], "tau must be > 0"),
    (QUICK + ["--config.dynamos.tau=-1"], "temperature dynamos.tau must be > 0"),
    (QUICK + ["--config.method=derpp", "--config.derpp.beta=-1"], "derpp.beta must be >= 0"),
    (QUICK + ["--config.batch_size=0"], "batch_size must be >= 1"),
    (
      QUICK + ["--config.data.source=files", "--config.data.path=/no/such/mnist.pkl.gz"],
      "/no/such/mnist.pkl.gz does not exist",
    ),
    (QUICK + ["--config.no_such_key=1"], "unknown config key 'no_such_key'"),
    (["--config=configs/no_such_config.py"], "No such file or directory"),
    (QUICK + ["--seed=3"], "run takes its seed from --config.seed"),
    (
      ["--config=configs/mnist360_quick.py", "--config.mnist360.repeats=0"],
      "mnist360.repeats must be >= 1",
    ),
    (QUICK + ["--config.train.max_tasks=-1"], "train.max_tasks must be >= 0"),
    (QUICK + ["--config.train.max_tasks=6"], "train.max_tasks=6 but seq-mnist has 5 tasks"),
    (
      ["--config=configs/mnist360_quick.py", "--config.train.max_tasks=1"],
      "is evaluated once, at the end of its stream",
    ),
  ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
  code, stderr = run_command(run.main, args + [f"--workdir={tmp_path}"])
  assert code == 2, stderr
  _one_error_line(stderr, expected)
  assert not (tmp_path / "results.json").exists()


# A fresh interpreter trains: the slow tier. The fast tier's run of the command:
# test_the_run_command_trains_and_prints_tables.
@pytest.mark.slow
def test_quickstart_config_smoke_run(tmp_path):
  result = _run(QUICK + TINY, tmp_path)
  assert result.returncode == 0, result.stderr
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["train"]["steps"] == 10
  assert results["config"]["data"]["source"] == "bundled"
  assert len(results["class_il"]["matrix"]) == 6
  assert "Class-IL accuracy" in result.stdout and "Task-IL accuracy" in result.stdout


def test_the_run_command_trains_and_prints_tables(tmp_path, capsys):
  """run's main on the quickstart config, in this process: results.json and the tables."""
  code, stderr = run_command(run.main, QUICK + TINY + [f"--workdir={tmp_path}"])
  assert code == 0, stderr
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["train"]["steps"] == 10 and len(results["class_il"]["matrix"]) == 6
  assert results["config"]["data"]["source"] == "bundled"
  out = capsys.readouterr().out
  assert "Class-IL accuracy" in out and "Task-IL accuracy" in out


def test_tfds_source_end_to_end(tmp_path, tiny_config):
  import tensorflow_datasets as tfds

  from dynamos_jax import trainer

  tiny_config.data.source = "tfds"
  tiny_config.train.max_steps_per_task = 2
  tiny_config.epochs = 1
  with tfds.testing.mock_data(num_examples=60):
    results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  assert results["train"]["steps"] <= 10
  assert len(results["task_il"]["matrix"]) == 6


# Slow tier; the fast tier's TFDS run: test_tfds_source_end_to_end.
@pytest.mark.slow
def test_seq_svhn_tfds_end_to_end(tmp_path, tiny_config):
  import tensorflow_datasets as tfds

  from dynamos_jax import trainer

  tiny_config.dataset = "seq-svhn"
  tiny_config.data.source = "tfds"
  tiny_config.train.max_steps_per_task = 2
  tiny_config.epochs = 1
  with tfds.testing.mock_data(num_examples=60):
    exp = trainer.Experiment(tiny_config)
    assert exp.benchmark.image_shape == (32, 32, 3)  # svhn_cropped, not MNIST
    results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  assert len(results["class_il"]["matrix"]) == 6
  assert all(v is not None for v in results["class_il"]["matrix"][5])


@pytest.mark.parametrize(
  "name, arg",
  [
    ("svhn", "500"),
    ("svhn", "1000"),
    ("svhn", "2000"),
    ("mnist360", "100"),
    ("mnist360", "200"),
    ("mnist360", "500"),
  ],
)
def test_table5_configs_are_valid(name, arg):
  import importlib.util

  from dynamos_jax import config as config_lib

  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(arg)
  config_lib.validate(c)
  assert c.buffer_size == int(arg) and c.batch_size == c.minibatch_size == 16
  assert c.dataset == {"svhn": "seq-svhn", "mnist360": "mnist-360"}[name]
  assert (c.epochs, c.dynamos.warmup.epochs, c.dynamos.warmup.iterations) == (
    (70, 10, 0) if name == "svhn" else (1, 0, 10)
  )
  with pytest.raises(ValueError, match="Table 5 has buffer sizes"):
    module.get_config("300")


@pytest.mark.parametrize("command", [evaluate, analyze], ids=["evaluate", "analyze"])
@pytest.mark.parametrize(
  "args, expected",
  [
    ([], "--workdir is required"),
    (["--workdir=/no/such/run"], "no checkpoints in /no/such/run/checkpoints"),
  ],
)
def test_run_reading_commands_fail_in_one_line(command, args, expected):
  code, stderr = run_command(command.main, args)
  assert code == 2
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]
