"""The command line: bad input gives one line and exit code 2; a real run end to end."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--config=configs/quickstart.py"]


def _run(args, tmp_path):
  return subprocess.run([sys.executable, "-m", "dynamos_jax.run", *args,
                         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.parametrize("args, expected", [
    (QUICK + ["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (QUICK + ["--config.method=ewc"], "unknown method 'ewc'"),
    (QUICK + ["--config.buffer_size=-1"], "buffer_size must be >= 0"),
    (QUICK + ["--config.kr=0"], "kr must be in (0, 1]"),
    (QUICK + ["--config.kr=1.5"], "kr must be in (0, 1]"),
    (QUICK + ["--config.tau=0"], "tau must be > 0"),
    (QUICK + ["--config.batch_size=0"], "batch_size must be >= 1"),
    (QUICK + ["--config.data.source=files", "--config.data.path=/no/such/mnist.pkl.gz"],
     "/no/such/mnist.pkl.gz does not exist"),
    (QUICK + ["--config.no_such_key=1"], "unknown config key 'no_such_key'"),
    (["--config=configs/no_such_config.py"], "No such file or directory"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
  result = _run(args, tmp_path)
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "results.json").exists()


def test_quickstart_config_smoke_run(tmp_path):
  result = _run(QUICK + ["--config.train.max_steps_per_task=2", "--config.warmup.iterations=1",
                         "--config.model.nf=8", "--config.model.mlp_reduction=4",
                         "--config.train.progress=False"], tmp_path)
  assert result.returncode == 0, result.stderr
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["train"]["steps"] == 10
  assert results["config"]["data"]["source"] == "bundled"
  assert len(results["class_il"]["matrix"]) == 6
  assert "Class-IL accuracy" in result.stdout and "Task-IL accuracy" in result.stdout


def test_tfds_source_end_to_end(tmp_path, tiny_config):
  import tensorflow_datasets as tfds

  from dynamos_jax import train
  tiny_config.data.source = "tfds"
  tiny_config.train.max_steps_per_task = 2
  tiny_config.epochs = 1
  with tfds.testing.mock_data(num_examples=60):
    results = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert results["train"]["steps"] <= 10
  assert len(results["task_il"]["matrix"]) == 6
