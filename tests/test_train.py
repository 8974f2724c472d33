"""The training step and the task loop on a tiny synthetic stream."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import buffer as buffer_lib
from dynamos_jax import runner
from dynamos_jax import train
from dynamos_jax.data.streams import Batch, EpochData


@pytest.fixture
def count_traces(monkeypatch):
  """Counts how often each phase's step function is traced."""
  counts = {}
  original = runner.make_train_step

  def counting(method, phase):
    step = original(method, phase)

    def traced(*a):
      counts[phase] = counts.get(phase, 0) + 1
      return step(*a)

    return traced

  monkeypatch.setattr("dynamos_jax.seeds.make_train_step", counting)
  return counts


@pytest.mark.parametrize("strategy", ["loop", "scan"])
def test_run_writes_results_and_compiles_each_phase_once(tiny_data, tiny_config, tmp_path,
                                                         count_traces, strategy):
  tiny_config.train.chunk_strategy = strategy
  results = train.train_and_evaluate(tiny_config, str(tmp_path))
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["class_il"] == results["class_il"]
  # 24 samples a task at batch 5 = 5 batches (the last partial) x 2 epochs.
  assert results["train"]["steps"] == 5 * 10
  assert results["train"]["chunk_strategy"] == strategy
  matrix = results["class_il"]["matrix"]
  assert len(matrix) == 6 and all(v is not None for v in matrix[0])
  for i in range(1, 6):
    assert all(v is not None for v in matrix[i][:i]) and all(v is None for v in matrix[i][i:])
  assert results["class_il"]["final_average"] == pytest.approx(np.mean(matrix[5]))
  # One trace per phase; scan traces its step twice (eval_shape for the skip branch, then the body).
  expected = 1 if strategy == "loop" else 2
  assert count_traces == {"warmup": expected, "main": expected}
  assert [e["phase"] for e in results["log"][:1]] == ["warmup"]


def test_loop_and_scan_agree(tiny_data, tiny_config, tmp_path):
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 4
  out = {}
  for strategy in ("loop", "scan"):
    tiny_config.train.chunk_strategy = strategy
    out[strategy] = train.train_and_evaluate(tiny_config, str(tmp_path / strategy))
  # XLA fuses the two programs differently, so floats differ in the last bits;
  # Bernoulli gates and argmax-driven rewards amplify that within a few dozen
  # steps, so compare the first task (warm-up chunk and first gated steps).
  loop, scan = out["loop"]["log"][:2], out["scan"]["log"][:2]
  assert [e["step"] for e in loop] == [e["step"] for e in scan] == [3, 4]
  for key in ("loss", "ce", "grad_norm"):
    np.testing.assert_allclose([e[key] for e in loop], [e[key] for e in scan], rtol=1e-4)


def test_same_seed_same_numbers(tiny_data, tiny_config, tmp_path):
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  a = train.train_and_evaluate(tiny_config, str(tmp_path / "a"))
  b = train.train_and_evaluate(tiny_config, str(tmp_path / "b"))
  tiny_config.seed = 1
  c = train.train_and_evaluate(tiny_config, str(tmp_path / "c"))
  assert a["log"] == b["log"] and a["class_il"] == b["class_il"]
  assert a["log"] != c["log"]
  assert a["train"]["steps"] == 15  # max_steps_per_task caps every task


def _setup(config, dataset):
  exp = train.Experiment(config)
  order = jnp.arange(10, dtype=jnp.int32).reshape(2, 5)
  data = EpochData(jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels),
                   order * 12, jnp.ones((2, 5), bool), jnp.int32(0))  # one image of each class
  return exp.method, exp.method.model, exp.initial_state(), data


def test_warmup_leaves_agents_and_buffer_alone(tiny_data, tiny_config):
  method, model, state, data = _setup(tiny_config, tiny_data)
  step = jax.jit(runner.make_train_step(method, "warmup"))
  new, metrics = step(state, data, 0)
  agents = lambda p: [p["layer2_0"]["agent_a"], p["layer2_1"]["agent_b"]]
  jax.tree.map(np.testing.assert_array_equal, agents(new.learner.params),
               agents(state.learner.params))
  assert not np.allclose(new.learner.params["conv1"]["kernel"],
                         state.learner.params["conv1"]["kernel"])
  assert int(new.learner.buffer.num_seen) == 0 and int(new.step) == 1
  assert set(metrics) == {"loss", "ce", "train_accuracy", "grad_norm", "buffer_seen"}


def test_main_step_is_eq7_with_two_bn_updates_and_inserts_pre_update_values(tiny_data,
                                                                           tiny_config):
  method, model, state, data = _setup(tiny_config, tiny_data)
  # Fill the buffer with the second row's samples, all marked correct.
  images, labels = data.images[data.order[1]], data.labels[data.order[1]]
  filled = buffer_lib.insert(state.learner.buffer, jnp.zeros(5, jnp.int32), images, labels,
                             jax.nn.one_hot(labels, 10) * 5, jnp.ones((5, 64)),
                             jnp.ones(5, bool), jnp.ones(5, bool), only_valid=False)
  state = state.replace(learner=state.learner.replace(buffer=filled))
  new, metrics = jax.jit(runner.make_train_step(method, "main"))(state, data, 0)
  learner, new = state.learner, new.learner

  # Recompute the step by hand with the same keys.
  key = jax.random.fold_in(state.key, state.step)
  gates_key, replay_key, _ = jax.random.split(key, 3)
  replay, replay_mask = buffer_lib.sample(learner.buffer, replay_key, 4, only_valid=False)
  key_current, key_replay = jax.random.split(gates_key)
  batch = Batch(data.images[data.order[0]], data.labels[data.order[0]], data.mask[0])
  variables = {"params": learner.params, "batch_stats": learner.batch_stats}
  (z, aux), s1 = model.apply(variables, batch.images, "sample", True, batch.mask,
                             rngs={"gates": key_current}, mutable=["batch_stats"])
  (_, _), s2 = model.apply({"params": learner.params, **s1}, replay.images, "sample", True,
                           replay_mask, rngs={"gates": key_replay}, mutable=["batch_stats"])
  # Both forwards updated the running statistics, one after the other.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               new.batch_stats, s2["batch_stats"])
  assert not np.allclose(s1["batch_stats"]["bn1"]["mean"], s2["batch_stats"]["bn1"]["mean"])

  m = metrics
  eq7 = (m["ce"] + 0.5 * m["reinforce"] + 0.3 * m["prototype"] + 0.2 * m["mse_logits"]
         + 0.2 * m["mse_attention"] + 2.0 * (m["replay_ce"] + 0.5 * m["replay_reinforce"])
         + 0.3 * m["replay_prototype"])
  np.testing.assert_allclose(m["loss"], eq7, rtol=1e-5)
  assert float(m["mse_logits"]) > 0 and float(m["replay_ce"]) > 0

  # Buffer: counter advanced by 5; written rows hold the pre-update logits.
  assert int(new.buffer.num_seen) == 10
  correct = np.asarray(jnp.argmax(z, -1) == batch.labels)
  slots = np.arange(5, 10)  # fill phase: n = 5..9 -> slots 5..9 (capacity 8: 5, 6, 7)
  for b, slot in enumerate(slots[:3]):
    if correct[b]:
      np.testing.assert_allclose(new.buffer.logits[slot], z[b], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(new.buffer.attention[slot], aux["attention"][b], rtol=1e-5,
                                 atol=1e-6)
    else:
      np.testing.assert_array_equal(new.buffer.logits[slot], 0.0)


def _warmup(steps):
  """A method's phases with a warm-up of ``steps`` opening task 1 (as Dynamos declares)."""
  return lambda task, batches: ((("warmup", steps), ("main", None)) if task == 0 and steps
                                else (("main", None),))


def test_plan_chunks_cuts_at_warmup_chunk_size_and_budget():
  chunks = runner.plan_chunks([5, 3], epochs=2, phases=_warmup(3), chunk_size=4)
  spans = [(c.task, c.epoch, c.start, c.stop, c.phase, c.ends_task) for c in chunks]
  assert spans == [
      (0, 0, 0, 3, "warmup", False), (0, 0, 3, 5, "main", False),
      (0, 1, 0, 4, "main", False), (0, 1, 4, 5, "main", True),
      (1, 0, 0, 3, "main", False), (1, 1, 0, 3, "main", True)]
  capped = runner.plan_chunks([5, 3], epochs=2, phases=_warmup(0), chunk_size=4,
                              max_steps_per_task=6)
  assert [(c.task, c.epoch, c.start, c.stop, c.ends_task) for c in capped] == [
      (0, 0, 0, 4, False), (0, 0, 4, 5, False), (0, 1, 0, 1, True),
      (1, 0, 0, 3, False), (1, 1, 0, 3, True)]
  assert [c.ends_epoch for c in chunks] == [False, True, False, True, True, True]
  # Warm-up longer than an epoch (warmup.epochs) spans epochs.
  long_warm = runner.plan_chunks([4], epochs=3, phases=_warmup(8), chunk_size=10)
  assert [(c.epoch, c.phase) for c in long_warm] == [(0, "warmup"), (1, "warmup"), (2, "main")]
