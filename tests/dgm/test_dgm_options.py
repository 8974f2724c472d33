"""DGM's non-default options through one tiny run (two one-class tasks, every step logged).

schedule=paper (eqs. 3-4), expansion=none, replay=fresh, aux_g and
reinit_d=False at once; each is checked on what it changes: the logged
scale against hat.scale's paper formula, no growth after a task, new replay
noise every step (and the same with replay=fixed), the class term in G's
loss (0 at task 1, one class seen), D's trunk carried into task 2 with only
its two heads drawn afresh.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import trainer
from dynamos_jax.data import sources
from dynamos_jax.methods.dgm import hat
from dynamos_jax.methods.dgm import replay as dgm_replay
from dynamos_jax.methods.dgm.dgm import DGM

from conftest import tiny_dataset
import dgm_two_tasks

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("dgm_options")

S, EPOCHS, BATCHES, SAMPLES, B = 1e4, 2, 3, 11, 4  # 12 a class, int(0.15 * 12) = 1 held out


def _config():
  c = config_lib.base_config()
  c.method, c.dataset, c.data.source = "dgm", dgm_two_tasks.NAME, "bundled"
  c.dgm.update(
    variant="w",
    ngf=2,
    ndf=4,
    nz=16,
    lambda_ru=0.5,
    schedule="paper",
    expansion="none",
    replay="fresh",
    aux_g=True,
    reinit_d=False,
  )
  c.batch_size, c.epochs = B, EPOCHS
  c.train.chunk_size = 1  # one log entry per step
  c.train.progress, c.train.eval_batch_size = False, 16
  c.checkpoint.every_steps = 1000
  return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(results, {hook: {task: (state in, state out)}}) of the run."""
  dataset = tiny_dataset(per_class=12, test_per_class=4, size=8)
  hooks = {"begin_task": {}, "end_task": {}}

  def spy(name):
    original = getattr(DGM, name)

    def hook(self, state, task):
      out = original(self, state, task)
      hooks[name][task.index] = (jax.device_get(state), jax.device_get(out))
      return out

    return hook

  with pytest.MonkeyPatch.context() as m:
    m.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    for name in hooks:
      m.setattr(DGM, name, spy(name))
    config = _config()
    config_lib.validate(config)
    results = trainer.train_and_evaluate(config, str(tmp_path_factory.mktemp("options")))
  return results, hooks


def test_paper_schedule_and_the_class_term_in_gs_loss(run):
  results, _ = run
  log = results["log"]
  assert len(log) == 2 * EPOCHS * BATCHES
  for i, e in enumerate(log):
    task, k = divmod(i, EPOCHS * BATCHES)
    epoch, position = divmod(k, BATCHES)
    s = hat.scale("paper", epoch, position, EPOCHS, BATCHES, SAMPLES, B, S, True)[0]
    np.testing.assert_allclose(e["s"], s, rtol=1e-5)
    # expansion=none: alpha stays 1. G's loss = -critic + lambda_RU R + CE(aux(fake), t).
    ce = e["g_loss"] + e["g_critic"] - 0.5 * e["reg"]
    if task == 0:  # one class seen: the class term is identically 0
      assert ce == pytest.approx(0.0, abs=1e-5)
    else:
      assert ce > 1e-3
  # The paper's schedule ends each task at s_max (the code's stops at (I - 1) / I of it).
  assert log[EPOCHS * BATCHES - 1]["s"] == pytest.approx(S, rel=1e-5)


def test_paper_ramp_ends_exactly_at_its_ends():
  """DGMw's per-batch ramp of the first epoch runs from S to 1/S (s^0 = 1/S); its last
  batch is exactly 1/S, not the float32 cancellation 1e4 - 9999.9999 = 0 that made the
  compensation's s^e / s infinite (a NaN from the third step of any paper-schedule run)."""
  for batches in (3, 94):
    s, s_e = hat.scale("paper", 0, batches - 1, 101, batches, 64 * batches, 64, S, True)
    assert float(s) == pytest.approx(1 / S, rel=1e-6) and float(s_e) == pytest.approx(1 / S)
    s, _ = hat.scale("paper", 0, 0, 101, batches, 64 * batches, 64, S, True)
    assert float(s) == pytest.approx(S, rel=1e-6)
  s, _ = hat.scale("paper", 100, 93, 101, 94, 64 * 94, 64, S, True)
  assert float(s) == pytest.approx(S, rel=1e-6)


def test_no_growth_with_expansion_none(run):
  _, hooks = run
  before, after = hooks["end_task"][0]
  np.testing.assert_array_equal(after.counts, before.counts)
  assert [w.shape for w in after.g["w"]] == [w.shape for w in before.g["w"]]
  assert int(np.sum(after.reserved)) > 0  # task 0 did reserve weights, which are not replaced


def test_d_keeps_its_trunk_and_draws_new_heads(run):
  _, hooks = run
  _, ended = hooks["end_task"][0]
  _, began = hooks["begin_task"][1]
  assert set(began.d) == set(ended.d) and {"critic", "aux"} <= set(began.d)
  for name in began.d:
    same = jax.tree.map(np.array_equal, began.d[name], ended.d[name])
    assert all(jax.tree.leaves(same)) == (name not in ("critic", "aux")), name
  for a, b in zip(jax.tree.leaves(began.d_stats), jax.tree.leaves(ended.d_stats)):
    np.testing.assert_array_equal(a, b)  # its running statistics carried too


def test_fresh_replay_draws_new_noise_every_step(run):
  _, hooks = run
  _, state = hooks["begin_task"][1]
  state = jax.tree.map(jnp.asarray, state)
  method = trainer.Experiment(_config()).method
  positions = jnp.arange(B)
  first = dgm_replay.replay(method, state, positions, 1)
  later = dgm_replay.replay(method, state.replace(step_in_task=jnp.int32(1)), positions, 1)
  assert first.shape == (1, B, 32, 32, 1)
  assert float(jnp.max(jnp.abs(first - later))) > 1e-3
  fixed = dataclasses.replace(method, replay="fixed")
  np.testing.assert_array_equal(
    dgm_replay.replay(fixed, state, positions, 1),
    dgm_replay.replay(fixed, state.replace(step_in_task=jnp.int32(1)), positions, 1),
  )
