"""Live metrics: JSON lines and TensorBoard events per seed, as the run goes."""

import glob
import json
import os
import struct

from tensorboardX.proto import event_pb2

from dynamos_jax import live as live_lib
from dynamos_jax import trainer


def read_lines(workdir, seed=0):
  with open(os.path.join(workdir, "live", f"seed_{seed}", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def read_scalars(workdir, seed=0):
  """{tag: [(step, value)]} of every TensorBoard event file of a seed's stream
  (TFRecord framing: length, its CRC, the Event proto, its CRC)."""
  scalars = {}
  for path in sorted(glob.glob(os.path.join(workdir, "live", f"seed_{seed}", "events.*"))):
    with open(path, "rb") as f:
      data = f.read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_a_run_streams_its_log_and_evaluations(tiny_data, tiny_config, tmp_path):
  tiny_config.method = "sgd"
  tiny_config.epochs = 1
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
  lines = read_lines(tmp_path)
  # Every log entry of results.json, in order, and an evaluation per task plus the untrained one.
  assert [l for l in lines if "eval" not in l] == results["log"]
  evals = [l for l in lines if "eval" in l]
  assert [e["task"] for e in evals] == list(range(6))
  matrix = results["class_il"]["matrix"]
  for e in evals[1:]:
    seen = [v for v in matrix[e["task"]] if v is not None]
    assert abs(e["eval"]["class_il"] - sum(seen) / len(seen)) < 1e-9
  scalars = read_scalars(tmp_path)
  assert [s for s, _ in scalars["train/loss"]] == [e["step"] for e in results["log"]]
  assert abs(scalars["train/loss"][-1][1] - results["log"][-1]["loss"]) < 1e-5
  assert scalars["eval/class_il"][-1] == (results["train"]["steps"], evals[-1]["eval"]["class_il"])
  assert "train/epoch" not in scalars and "train/step" not in scalars


def test_live_metrics_can_be_switched_off(tiny_data, tiny_config, tmp_path):
  tiny_config.method = "sgd"
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 1
  tiny_config.train.live_metrics = False
  trainer.train_and_evaluate(tiny_config, str(tmp_path))
  assert not os.path.exists(tmp_path / "live")


def test_a_resume_keeps_the_lines_up_to_its_step(tmp_path):
  path = tmp_path / "live" / "seed_3" / "metrics.jsonl"
  path.parent.mkdir(parents=True)
  path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (4, 8, 12)) + '{"st')
  stream = live_lib.LiveMetrics(str(tmp_path), [3], resume_step=8)
  stream.log(0, {"step": 12, "task": 1, "epoch": 1, "phase": "main", "loss": 0.5})
  stream.close()
  assert [l["step"] for l in read_lines(tmp_path, 3)] == [4, 8, 12]
  assert read_lines(tmp_path, 3)[-1]["loss"] == 0.5
