"""train.parallel_passes: Dynamos' two passes on two devices equal the one-device step.

The two-device runs are in a subprocess with two CPU devices (the test
process has one). Compared there, from one state: every step's metrics,
parameters, BN running statistics and buffer, over steps that start from an
empty buffer (the replay draw has no real row: the statistics must stay the
current pass's) and go on with replay; then a whole tiny run through the
trainer (evaluation, checkpoints) with the option on.
"""

import json
import os
import subprocess
import sys

import pytest

from dynamos_jax import config as config_lib
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.dynamos import two_pass

from conftest import ROOT, subprocess_env

_SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np
from conftest import tiny_dataset
from dynamos_jax.data import sources
sources.load_dataset = lambda *a, **k: tiny_dataset()
from dynamos_jax import chunks, config as config_lib, trainer
c = config_lib.base_config()
c.update(json.loads({config!r}))

def rel(a, b):
  # Largest difference of a pytree's leaves, relative to each leaf's scale.
  return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max()
                   / (np.abs(np.asarray(x, np.float64)).max() + 1e-12))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

report = {{}}
for moments in (False, True):  # the agents' Flax layers, and from moments (the default)
 c.model.agent_moments = moments
 exps = []
 for flag in (False, True):
  c.train.parallel_passes = flag
  exps.append(trainer.Experiment(c, 0))
 steps = [jax.jit(chunks.make_train_step(e.method, "main")) for e in exps]
 data = exps[0].benchmark.epoch_data(0, 0)
 a = b = exps[0].initial_state()
 report["moments" if moments else "plain"] = []
 for position in range(6):
  replay_rows = int(a.learner.buffer.num_seen)
  # Plain: two whole trajectories (they stay equal to the last bits). Moments: every step
  # from the one-device state, because last-bit differences there flip an agent's Bernoulli
  # gate within a few steps and the trajectories part (measured: 6e-2 of the weights by step 6).
  start = b if not moments else a
  a, ma = steps[0](a, data, np.int32(position))
  b, mb = steps[1](start, data, np.int32(position))
  report["moments" if moments else "plain"].append({{
      "replay_rows_before": replay_rows,
      "metric_keys_equal": sorted(ma) == sorted(mb),
      "metrics": max(abs(float(ma[k]) - float(mb[k])) / (abs(float(ma[k])) + 1e-6) for k in ma),
      "params": rel(a.learner.params, b.learner.params),
      "stats": rel(a.learner.batch_stats, b.learner.batch_stats),
      "buffer_labels_equal": bool(np.array_equal(a.learner.buffer.labels,
                                                 b.learner.buffer.labels)),
      "buffer_logits": rel(a.learner.buffer.logits, b.learner.buffer.logits),
      "devices": len(b.learner.params["head"]["kernel"].sharding.device_set)}})
c.train.parallel_passes = True
from dynamos_jax.seeds import Seeds
layout = Seeds(c)  # the run's state and data: replicated on the two devices once
params = layout.initial_state().learner.params
report["placed"] = [len(params["head"]["kernel"].sharding.device_set),
                    len(layout.epoch_data(0, 0).images.sharding.device_set)]
results = trainer.train_and_evaluate(c, {workdir!r})
report["run_class_il"] = results["class_il"]["matrix"]
print(json.dumps(report))
"""


# A 2-device process trains: the slow tier.
@pytest.mark.slow
def test_two_device_passes_equal_one_device_step(tiny_config, tmp_path):
  config = tiny_config
  config.minibatch_size = config.batch_size  # the passes are stacked
  config.dynamos.warmup.iterations = 0
  config.epochs = 1
  config.train.max_steps_per_task = 3
  script = _SCRIPT.format(
    tests=os.path.join(ROOT, "tests"), config=config.to_json(), workdir=str(tmp_path / "run")
  )
  env = subprocess_env(JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(
    [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  # Float reassociation only: a wrong key, weight or pass would differ by O(1), a missed
  # statistics chain by ~10% of a running mean.
  for layers in ("plain", "moments"):
    steps = report[layers]
    assert steps[0]["replay_rows_before"] == 0 and steps[-1]["replay_rows_before"] > 0
    for s in steps:
      assert s["metric_keys_equal"] and s["buffer_labels_equal"], (layers, s)
      assert s["devices"] == 2, s  # the two-device program ran
      assert s["metrics"] < 1e-4 and s["stats"] < 1e-5 and s["params"] < 1e-4, (layers, s)
      assert s["buffer_logits"] < 1e-4, (layers, s)
  assert report["placed"] == [2, 2]
  matrix = report["run_class_il"]
  # The run went through every task's training and evaluation (the last row: all 5 tasks).
  assert len(matrix[-1]) == 5 and all(x is not None and 0.0 <= x <= 100.0 for x in matrix[-1])


def test_parallel_passes_refused_where_it_cannot_run(tiny_config):
  tiny_config.train.parallel_passes = True
  with pytest.raises(ConfigError, match="batch_size = minibatch_size"):
    config_lib.validate(tiny_config)  # tiny: batch 5, replay 4
  tiny_config.minibatch_size = tiny_config.batch_size
  config_lib.validate(tiny_config)
  tiny_config.seeds = "0,1"
  with pytest.raises(ConfigError, match="one seed"):
    config_lib.validate(tiny_config)
  tiny_config.seeds = ""
  tiny_config.sweep = "dynamos.alpha=0.1,0.2"
  with pytest.raises(ConfigError, match="sweep"):
    config_lib.validate(tiny_config)
  tiny_config.sweep = ""
  tiny_config.method = "derpp"
  with pytest.raises(ConfigError, match="dynamos only"):
    config_lib.validate(tiny_config)
  # This process has one device: the step says how to get two.
  with pytest.raises(ConfigError, match="host_devices=2"):
    two_pass.pass_mesh()
