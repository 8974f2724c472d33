"""Several seeds in one program: each seed's results equal its own one-seed run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_live import read_lines

from dynamos_jax import chunks, evaluate, parallel, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.data.streams import EpochData
from dynamos_jax.errors import ConfigError, InputError

from conftest import ROOT, subprocess_env


def _short(config):
  config.epochs = 1
  config.train.max_steps_per_task = 4
  return config


def _comparable(run: dict) -> dict:
  """Accuracy matrices (exact) and per-chunk losses of one seed's results."""
  return {
    "class_il": run["class_il"]["matrix"],
    "task_il": run["task_il"]["matrix"],
    "loss": [entry["loss"] for entry in run["log"]],
  }


# Slow tier: bit-equality across programs, under XLA's defaults (conftest.FAST_COMPILE_FLAG).
@pytest.mark.slow
def test_unrolled_seeds_equal_their_one_seed_runs(tiny_data, tiny_config, tmp_path):
  config = _short(tiny_config)
  config.seeds = "0,2"
  config.train.seed_strategy = "unroll"
  multi = trainer.train_and_evaluate(config, str(tmp_path / "multi"))
  assert multi["seeds"] == [0, 2] and multi["train"]["seeds"] == 2
  # Seed 2 sits second in the stack: its slice and its own keys are what could go wrong.
  for run, seed in zip(multi["runs"][1:], (2,)):
    one = tiny_config.copy_and_resolve_references()
    one.seeds, one.seed = "", seed
    single = trainer.train_and_evaluate(one, str(tmp_path / f"seed_{seed}"))
    got, want = _comparable(run), _comparable(single)
    # The same ops per seed; XLA may fuse a loss mean differently in the larger
    # program, so logged means can differ in the last bit (states do not).
    assert got["class_il"] == want["class_il"] and got["task_il"] == want["task_il"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
  assert _comparable(multi["runs"][0]) != _comparable(multi["runs"][1])
  finals = [r["metrics"]["task_il"]["final_average"] for r in multi["runs"]]
  summary = multi["summary"]["task_il"]["final_average"]
  assert summary["values"] == finals
  assert summary["mean"] == pytest.approx(np.mean(finals))
  assert summary["std"] == pytest.approx(np.std(finals, ddof=1))
  saved = json.loads((tmp_path / "multi" / "results.json").read_text())
  assert saved["summary"] == multi["summary"]


# vmap (seed_strategy's choice on GPU) runs in the slow tier, beside the vmapped sweep.
@pytest.mark.slow
def test_vmapped_step_matches_one_seed_steps(tiny_data, tiny_config):
  """vmap batches each op over the seeds: equal up to float reassociation.

  Batched convolutions and reductions sum in another order than the one-seed
  ops, so states agree to ~1e-6 after a step, not bit for bit; over a whole
  run the agents' Bernoulli draws and the add-if-correct rule amplify such
  differences, which is why the equality test of whole runs uses ``unroll``.
  """
  exps = [trainer.Experiment(tiny_config, s) for s in (0, 1)]
  step = chunks.make_train_step(exps[0].method, "main")
  states = [e.initial_state() for e in exps]
  datas = [e.benchmark.epoch_data(0, 0) for e in exps]
  order, mask = parallel.stack([(d.order, d.mask) for d in datas])
  stacked_data = EpochData(datas[0].images, datas[0].labels, order, mask, datas[0].task)
  one_step, vmapped = jax.jit(step), jax.jit(parallel.over_seeds(step, "vmap", None))
  for position in range(3):
    outs = [one_step(s, d, np.int32(position)) for s, d in zip(states, datas)]
    batched, metrics = vmapped(parallel.stack(states), stacked_data, np.int32(position))
    for i, (state, m) in enumerate(outs):
      # Each leaf's update agrees to 5e-4 of its size: float32 sums of
      # REINFORCE terms weighted by lam=500 nearly cancel and lose a few
      # digits (measured up to 1.7e-4 on the tiny data's second step; a wrong
      # seed's keys or data would differ by O(1)).
      for a, b, before in zip(
        jax.tree.leaves(parallel.index(batched.learner.params, i)),
        jax.tree.leaves(state.learner.params),
        jax.tree.leaves(states[i].learner.params),
      ):
        update = np.abs(np.asarray(b) - np.asarray(before)).max()
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 5e-4 * update + 1e-7
      np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-5)
      assert np.array_equal(
        parallel.index(batched.learner.buffer.labels, i), state.learner.buffer.labels
      )
    states = [s for s, _ in outs]  # The next step starts both from the one-seed states.


_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import tiny_dataset
from dynamos_jax.data import sources
sources.load_dataset = lambda *a, **k: tiny_dataset()
from dynamos_jax import config as config_lib, parallel, trainer
c = config_lib.base_config()
c.update(json.loads({config!r}))
parallel.start(c)
results = trainer.train_and_evaluate(c, {workdir!r})
import jax
print(json.dumps({{"devices": results["train"]["devices"], "count": jax.device_count(),
                  "runs": results["runs"]}}))
"""


# Two 4-device processes train: the slow tier. The fast tier's seeds in one program:
# test_vmapped_step_matches_one_seed_steps, test_unrolled_seeds_equal_their_one_seed_runs.
@pytest.mark.slow
def test_seeds_sharded_over_four_devices_equal_one_device(tiny_config, tmp_path):
  """In a process with 4 CPU devices: sharding the seeds changes no number.

  Both runs are in 4-device processes because XLA:CPU splits some kernels
  (the convolutions' weight gradients) by the process's thread pool, so a
  1-device process rounds those sums differently (~1e-7 relative) whatever
  the program (docs/speed.md#seeds-devices-and-loops-on-a-cpu-2026-11-21).
  """
  config = _short(tiny_config)
  config.dynamos.warmup.iterations = 0  # One phase, one compilation per process.
  # The guarantee is the Flax-layer agents': with agent_moments the unrolled and the
  # sharded programs round the moments' sums differently
  # (docs/running.md#equality-with-one-seed-runs).
  config.model.agent_moments = False
  config.seeds = "0,1,2,3"
  config.train.host_devices = 4
  outputs = {}
  for devices in (1, 4):
    config.train.seed_devices = devices
    script = _SCRIPT.format(
      tests=os.path.join(ROOT, "tests"),
      config=config.to_json(),
      workdir=str(tmp_path / f"devices_{devices}"),
    )
    env = subprocess_env(JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
      [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs[devices] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outputs[devices]["count"] == 4 and outputs[devices]["devices"] == devices
  for one, four in zip(outputs[1]["runs"], outputs[4]["runs"]):
    assert _comparable(four) == _comparable(one)


def test_bad_seeds_are_refused_in_one_line(tiny_config):
  for bad, message in [("0,x", "integers"), ("1,1", "repeat"), ("-1", ">= 0")]:
    tiny_config.seeds = bad
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(tiny_config)
  tiny_config.seeds = "0,1"
  tiny_config.train.seed_strategy = "pmap"
  with pytest.raises(ConfigError, match="seed_strategy"):
    config_lib.validate(tiny_config)
  tiny_config.seeds = "3, 5"
  assert config_lib.run_seeds(tiny_config) == [3, 5]
  tiny_config.seeds, tiny_config.seed = "", 7
  assert config_lib.run_seeds(tiny_config) == [7]


def test_seed_mesh_and_host_devices_in_a_started_process():
  assert parallel.seed_mesh(1) is None
  # One device here (the multi-device case runs in the subprocess test above).
  assert parallel.seed_mesh(4) is None or parallel.seed_mesh(4).size == jax.device_count()
  jax.devices()  # JAX has started: the device count can no longer change.
  with pytest.raises(InputError, match="before JAX starts"):
    parallel.use_host_devices(jax.device_count() + 3)
  parallel.use_host_devices(0)  # 0 leaves the process as it is.


# Slow tier; the fast tier resumes several members in
# tests/core/test_sweep.py::test_a_sweep_resumes_after_a_crash.
@pytest.mark.slow
def test_multi_seed_run_resumes_after_a_crash(tiny_data, tiny_config, tmp_path, monkeypatch):
  config = _short(tiny_config)
  config.dynamos.warmup.iterations = 0  # One phase: fewer compilations.
  config.seeds = "0,1"
  config.train.max_steps_per_task = 2
  config.checkpoint.every_steps = 2
  reference = trainer.train_and_evaluate(config, str(tmp_path / "ref"))
  original, calls = chunks.ChunkRunner.run, {"n": 0}

  def crashing(self, *args):
    calls["n"] += 1
    if calls["n"] == 4:
      raise KeyboardInterrupt  # A crash between checkpoints.
    return original(self, *args)

  with monkeypatch.context() as m:
    m.setattr(chunks.ChunkRunner, "run", crashing)
    with pytest.raises(KeyboardInterrupt):
      trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert os.listdir(tmp_path / "run" / "checkpoints")  # It resumes, not restarts.
  resumed = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert resumed["runs"] == reference["runs"] and resumed["summary"] == reference["summary"]
  for i, seed in enumerate((0, 1)):  # One live stream per seed, as if uninterrupted.
    lines = read_lines(tmp_path / "run", seed)
    assert lines == read_lines(tmp_path / "ref", seed)
    assert [l for l in lines if "eval" not in l] == reference["runs"][i]["log"]
  # evaluate reads every seed of the run, or the one asked for; restore_run needs one.
  fresh = evaluate.evaluate_workdir(str(tmp_path / "run"))
  assert sorted(fresh) == [0, 1]
  for seed, run in zip((0, 1), reference["runs"]):
    assert fresh[seed]["class_il"] == run["class_il"]["matrix"][-1]
  assert evaluate.evaluate_workdir(str(tmp_path / "run"), seed=1) == fresh[1]
  with pytest.raises(InputError, match="pick one with --seed"):
    trainer.restore_run(str(tmp_path / "run"))
  with pytest.raises(InputError, match="seed 5 is not one of the run's seeds"):
    trainer.restore_seeds(str(tmp_path / "run"), seed=5)


def test_distributed_start_reads_the_process_count_and_id(tmp_path):
  """train.distributed=True initialises jax.distributed from the variables of
  docs/running.md#multi-host (1 process)."""
  import socket

  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  script = (
    "from dynamos_jax import config as config_lib, parallel\n"
    "c = config_lib.base_config(); c.train.distributed = True\n"
    "parallel.start(c)\n"
    "import jax; print(jax.process_count(), jax.process_index())\n"
  )
  env = dict(
    os.environ,
    JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
    JAX_NUM_PROCESSES="1",
    JAX_PROCESS_ID="0",
    JAX_PLATFORMS="cpu",
  )
  proc = subprocess.run(
    [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split()[-2:] == ["1", "0"]
