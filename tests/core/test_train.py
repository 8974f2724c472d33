"""The training step and the task loop on a tiny synthetic stream."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import accuracy, trainer
from dynamos_jax import chunks as runner
from dynamos_jax.data.streams import EpochData
from dynamos_jax.methods.dynamos import buffer as buffer_lib
from dynamos_jax.state import TrainState

import dynamos_reference as ref


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


# scan is the slow tier's (with test_loop_and_scan_agree).
@pytest.mark.parametrize("strategy", ["loop", pytest.param("scan", marks=pytest.mark.slow)])
def test_run_writes_results_and_compiles_each_phase_once(
  tiny_data, tiny_config, tmp_path, count_traces, strategy
):
  tiny_config.train.chunk_strategy = strategy
  results = trainer.train_and_evaluate(tiny_config, str(tmp_path))
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


# The scan strategy (chunk_strategy=auto's choice off CPU) runs in the slow tier.
@pytest.mark.slow
def test_loop_and_scan_agree(tiny_data, tiny_config, tmp_path):
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 4
  out = {}
  for strategy in ("loop", "scan"):
    tiny_config.train.chunk_strategy = strategy
    out[strategy] = trainer.train_and_evaluate(tiny_config, str(tmp_path / strategy))
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
  a = trainer.train_and_evaluate(tiny_config, str(tmp_path / "a"))
  b = trainer.train_and_evaluate(tiny_config, str(tmp_path / "b"))
  tiny_config.seed = 1
  c = trainer.train_and_evaluate(tiny_config, str(tmp_path / "c"))
  assert a["log"] == b["log"] and a["class_il"] == b["class_il"]
  assert a["log"] != c["log"]
  assert a["train"]["steps"] == 15  # max_steps_per_task caps every task


def _setup(config, dataset):
  exp = trainer.Experiment(config)
  order = jnp.arange(10, dtype=jnp.int32).reshape(2, 5)
  data = EpochData(
    jnp.asarray(dataset.train_images),
    jnp.asarray(dataset.train_labels),
    order * 12,
    jnp.ones((2, 5), bool),
    jnp.int32(0),
  )  # one image of each class
  return exp.method, exp.method.model, exp.initial_state(), data


def test_warmup_leaves_agents_and_buffer_alone(tiny_data, tiny_config):
  method, model, state, data = _setup(tiny_config, tiny_data)
  step = jax.jit(runner.make_train_step(method, "warmup"))
  new, metrics = step(state, data, 0)
  agents = lambda p: [p["layer2_0"]["agent_a"], p["layer2_1"]["agent_b"]]
  jax.tree.map(
    np.testing.assert_array_equal, agents(new.learner.params), agents(state.learner.params)
  )
  assert not np.allclose(
    new.learner.params["conv1"]["kernel"], state.learner.params["conv1"]["kernel"]
  )
  assert int(new.learner.buffer.num_seen) == 0 and int(new.step) == 1
  assert set(metrics) == {"loss", "ce", "train_accuracy", "grad_norm", "buffer_seen"}


# Eq. 7's weights, all different (and none the default), so a swapped or
# dropped weight changes the total.
DISTINCT_WEIGHTS = dict(alpha=0.3, beta=1.7, alpha_p=0.45, gamma=0.6, w_p=0.25, lam=37.0, kr=0.55)


def _eq7(xp, w, tau, out, labels, r_out, r_labels, replay, consts):
  """Eq. 7 from the two forwards' raw outputs, by ``dynamos_reference``.

  Eq. 7 is written out in docs/dynamos.md#consistency-losses-and-the-total-loss.

  out, r_out: (logits, actions, attention) of the current and replay forwards;
  consts: host constants (rewards and correct masks of both forwards).
  Returns (total, dict of the terms).
  """
  (z, a, v), (zm, am, vm) = out, r_out
  reward, reward_m, correct, correct_m = consts
  t = {
    "ce": ref.cross_entropy(xp, z, labels),
    "reinforce": ref.reinforce(xp, ref.log_prob(xp, v, a, tau, 4), reward),
    "prototype": ref.prototype(xp, v, labels, correct),
    "mse_logits": ref.mse(xp, zm, replay.logits),
    "mse_attention": ref.mse(xp, vm, replay.attention),
    "replay_ce": ref.cross_entropy(xp, zm, r_labels),
    "replay_reinforce": ref.reinforce(xp, ref.log_prob(xp, vm, am, tau, 4), reward_m),
    "replay_prototype": ref.prototype(xp, vm, r_labels, correct_m),
  }
  total = (
    t["ce"]
    + w["gamma"] * t["reinforce"]
    + w["w_p"] * t["prototype"]
    + w["alpha"] * t["mse_logits"]
    + w["alpha_p"] * t["mse_attention"]
    + w["beta"] * (t["replay_ce"] + w["gamma"] * t["replay_reinforce"])
    + w["w_p"] * t["replay_prototype"]
  )
  return total, t


def test_main_step_is_eq7_with_two_bn_updates_and_inserts_pre_update_values(tiny_data, tiny_config):
  tiny_config.dynamos.update(DISTINCT_WEIGHTS)
  w, tau = DISTINCT_WEIGHTS, tiny_config.dynamos.tau
  method, model, state, data = _setup(tiny_config, tiny_data)
  learner = state.learner
  rng = np.random.default_rng(0)
  # The buffer holds the second row's five samples (n = 5 of capacity 8), with
  # stored logits and attention that the fresh forward will not reproduce.
  stored_logits = jnp.asarray(rng.normal(size=(5, 10)), jnp.float32)
  stored_attention = jnp.asarray(rng.normal(size=(5, 64)), jnp.float32)

  def fill(labels):
    return buffer_lib.insert(
      learner.buffer,
      jnp.zeros(5, jnp.int32),
      data.images[data.order[1]],
      jnp.asarray(labels, jnp.int32),
      stored_logits,
      stored_attention,
      jnp.ones(5, bool),
      jnp.ones(5, bool),
      only_valid=False,
    )

  # The step's keys, derived as the trainer does.
  key = jax.random.fold_in(state.key, state.step)
  gates_key, replay_key, _ = jax.random.split(key, 3)
  key_current, key_replay = jax.random.split(gates_key)
  # Which slots the replay draw takes does not depend on the labels: a buffer
  # labelled with slot numbers tells them.
  slots_drawn, replay_mask = buffer_lib.sample(fill(np.arange(5)), replay_key, 4, only_valid=False)
  slots_drawn = np.asarray(slots_drawn.labels)
  assert np.all(replay_mask)

  # Both train-mode forwards, one after the other (the second sees the first's
  # BN update). Neither depends on the labels.
  images = data.images[data.order[0]]

  def forwards(params):
    (z, aux), s1 = model.apply(
      {"params": params, "batch_stats": learner.batch_stats},
      images,
      "sample",
      True,
      jnp.ones(5, bool),
      rngs={"gates": key_current},
      mutable=["batch_stats"],
    )
    (zm, auxm), s2 = model.apply(
      {"params": params, **s1},
      data.images[data.order[1]][slots_drawn],
      "sample",
      True,
      jnp.ones(4, bool),
      rngs={"gates": key_replay},
      mutable=["batch_stats"],
    )
    return ((z, aux["actions"], aux["attention"]), (zm, auxm["actions"], auxm["attention"]), s1, s2)

  out, r_out, s1, s2 = jax.jit(forwards)(learner.params)
  # Labels chosen from the predictions: three correct of five in each forward
  # (so the prototype terms are on and three samples are inserted), two wrong.
  pred, pred_m = np.argmax(out[0], -1), np.argmax(r_out[0], -1)
  labels = np.where(np.arange(5) < 3, pred, (pred + 1) % 10).astype(np.int32)
  r_labels = np.where(np.arange(4) < 3, pred_m, (pred_m + 1) % 10).astype(np.int32)
  slot_labels = np.full(5, 9, np.int32)
  slot_labels[slots_drawn] = r_labels
  data = data.replace(labels=data.labels.at[data.order[0]].set(jnp.asarray(labels)))
  state = state.replace(learner=learner.replace(buffer=fill(slot_labels)))
  learner = state.learner

  new, metrics = jax.jit(runner.make_train_step(method, "main"))(state, data, 0)
  new = new.learner

  # Both forwards updated the running statistics, one after the other.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    new.batch_stats,
    s2["batch_stats"],
  )
  assert not np.allclose(s1["batch_stats"]["bn1"]["mean"], s2["batch_stats"]["bn1"]["mean"])

  # Eq. 7 recomputed in float64 NumPy from the forwards' raw outputs.
  replay, _ = buffer_lib.sample(learner.buffer, replay_key, 4, only_valid=False)
  np.testing.assert_array_equal(replay.labels, r_labels)
  f64 = lambda t: tuple(np.asarray(x, np.float64) for x in t)
  out64, r_out64 = f64(out), f64(r_out)
  replay64 = buffer_lib.Replay(
    *(
      np.asarray(x, np.float64)
      for x in (replay.images, replay.labels, replay.logits, replay.attention)
    )
  )
  consts = (
    ref.rewards(out[0], out[1], labels, w["kr"], w["lam"], 4),
    ref.rewards(r_out[0], r_out[1], r_labels, w["kr"], w["lam"], 4),
    ref.correct(out[0], labels),
    ref.correct(r_out[0], r_labels),
  )
  assert consts[2].sum() == consts[3].sum() == 3
  total, terms = _eq7(np, w, tau, out64, labels, r_out64, r_labels, replay64, consts)
  for name, value in terms.items():
    assert abs(float(value)) > 1e-3, name  # every term is on, so every weight matters
    np.testing.assert_allclose(metrics[name], value, rtol=2e-5, err_msg=name)
  np.testing.assert_allclose(metrics["loss"], total, rtol=2e-5)

  # The update is one SGD step on the gradient of that same loss (an
  # independent JAX version, differentiated through both forwards).
  def loss(params):
    o, ro, _, _ = forwards(params)
    return _eq7(jnp, w, tau, o, labels, ro, r_labels, replay, consts)[0]

  grads = jax.jit(jax.grad(loss))(learner.params)
  expected = jax.tree.map(lambda p, g: p - tiny_config.lr * g, learner.params, grads)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new.params, expected
  )

  # Buffer: counter advanced by 5. The batch's samples n = 5, 6, 7 fill slots
  # 5-7; being correct they are written, with the pre-update logits and V.
  # The two wrong ones (n = 8, 9: random slots) write nothing.
  assert int(new.buffer.num_seen) == 10
  for b, slot in enumerate(range(5, 8)):
    assert int(new.buffer.labels[slot]) == labels[b]
    np.testing.assert_array_equal(new.buffer.images[slot], images[b])
    np.testing.assert_allclose(new.buffer.logits[slot], out[0][b], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.buffer.attention[slot], out[2][b], rtol=1e-5, atol=1e-6)
  for field in ("images", "labels", "logits", "attention"):
    np.testing.assert_array_equal(
      getattr(new.buffer, field)[:5], getattr(learner.buffer, field)[:5]
    )


def _warmup(steps):
  """A method's phases with a warm-up of ``steps`` opening task 1 (as Dynamos declares)."""
  return lambda task, batches: (
    (("warmup", steps), ("main", None)) if task == 0 and steps else (("main", None),)
  )


def test_plan_chunks_cuts_at_warmup_chunk_size_and_budget():
  chunks = runner.plan_chunks([5, 3], epochs=2, phases=_warmup(3), chunk_size=4)
  spans = [(c.task, c.epoch, c.start, c.stop, c.phase, c.ends_task) for c in chunks]
  assert spans == [
    (0, 0, 0, 3, "warmup", False),
    (0, 0, 3, 5, "main", False),
    (0, 1, 0, 4, "main", False),
    (0, 1, 4, 5, "main", True),
    (1, 0, 0, 3, "main", False),
    (1, 1, 0, 3, "main", True),
  ]
  capped = runner.plan_chunks(
    [5, 3], epochs=2, phases=_warmup(0), chunk_size=4, max_steps_per_task=6
  )
  assert [(c.task, c.epoch, c.start, c.stop, c.ends_task) for c in capped] == [
    (0, 0, 0, 4, False),
    (0, 0, 4, 5, False),
    (0, 1, 0, 1, True),
    (1, 0, 0, 3, False),
    (1, 1, 0, 3, True),
  ]
  assert [c.ends_epoch for c in chunks] == [False, True, False, True, True, True]
  # Warm-up longer than an epoch (warmup.epochs) spans epochs.
  long_warm = runner.plan_chunks([4], epochs=3, phases=_warmup(8), chunk_size=10)
  assert [(c.epoch, c.phase) for c in long_warm] == [(0, "warmup"), (1, "warmup"), (2, "main")]


def test_equal_methods_share_one_step_and_prediction_others_do_not(tiny_data, tiny_config):
  a, b = trainer.Experiment(tiny_config).method, trainer.Experiment(tiny_config).method
  assert a == b and a is not b
  # One function for equal methods: JAX traces and compiles it once per process.
  assert runner.make_train_step(a, "main") is runner.make_train_step(b, "main")
  assert runner.make_train_step(a, "warmup") is not runner.make_train_step(a, "main")
  tiny_config.lr = 0.5  # another method: its own step
  c = trainer.Experiment(tiny_config).method
  assert c != a and runner.make_train_step(c, "main") is not runner.make_train_step(a, "main")
  # A method that cannot be hashed still gets its step and predictions, each its own.
  unhashable = types.SimpleNamespace(
    step=lambda learner, batch, key, phase: (learner + 1, {}),
    predict=lambda state, images, task, phase: images * state,
  )
  first = runner.make_train_step(unhashable, "main")
  assert first is not runner.make_train_step(unhashable, "main")
  data = EpochData(
    jnp.zeros((4, 1)),
    jnp.zeros(4, jnp.int32),
    jnp.zeros((1, 4), jnp.int32),
    jnp.ones((1, 4), bool),
    jnp.int32(0),
  )
  state = TrainState(step=jnp.int32(0), key=jax.random.key(0), learner=jnp.float32(1.0))
  assert float(first(state, data, 0)[0].learner) == 2.0
  predict = accuracy.Predictors(unhashable)(jnp.float32(3.0), "main")
  np.testing.assert_array_equal(predict(jnp.ones((2, 1)), None), 3.0)
