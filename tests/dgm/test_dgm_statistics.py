"""dgm.d_statistics (methods/dgm/statistics.py): D evaluated with replay-estimated BN statistics.

Fast tier: the estimate is the batch's own statistics (D in eval mode with them
computes on the batch what training mode does), and bad input is one line. Slow
tier: a tiny two-task run with ``replay`` trains exactly as one with ``running``
(the option touches evaluation only), its accuracy matrix is D's with the
re-estimated statistics, and reproduce/dgm_bn_diagnostic.py's "replayed" way on the
running run's checkpoints gives the same rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax import config as config_lib
from dynamos_jax import trainer
from dynamos_jax.data import sources
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.dgm import config as dgm_config
from dynamos_jax.methods.dgm import statistics
from dynamos_jax.methods.dgm.dgm import DGM
from dynamos_jax.methods.dgm.discriminator import to_unit

from conftest import load_script, tiny_dataset
import dgm_two_tasks

diagnostic = load_script("dgm_bn_diagnostic", "reproduce", "dgm_bn_diagnostic.py")

pytestmark = pytest.mark.xdist_group("dgm")


@pytest.fixture
def method(monkeypatch):
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: tiny_dataset())
  return trainer.Experiment(dgm_two_tasks.config(d_statistics="replay"), 0).method


def test_the_estimate_is_the_batch_statistics(method):
  """With the estimate of a batch x, D in eval mode on x equals D in training mode on x;
  with the running statistics of a fresh D it does not (they are not x's)."""
  state = method.init(jax.random.key(0), None, None)
  x = jax.random.uniform(jax.random.key(1), (48, 32, 32, 1), minval=-1.0, maxval=1.0)
  x = x * jnp.linspace(0.2, 1.0, 48)[:, None, None, None] + 0.3  # far from mean 0, var 1
  stats = statistics.batch_statistics(method, state.d, state.d_stats, x)
  assert jax.tree.structure(stats) == jax.tree.structure(state.d_stats)
  _, trained, _ = method._d_apply(state.d, state.d_stats, x, True)
  _, evaluated, _ = method._d_apply(state.d, stats, x, False)
  _, running, _ = method._d_apply(state.d, state.d_stats, x, False)
  np.testing.assert_allclose(evaluated, trained, rtol=1e-4, atol=1e-4)
  assert np.max(np.abs(running - trained)) > 1e-2


def test_running_keeps_no_evaluation_statistics(monkeypatch):
  """``running``, the default, adds no leaves to the state (checkpoints as before)."""
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: tiny_dataset())
  method = trainer.Experiment(dgm_two_tasks.config(), 0).method
  assert method.d_statistics == "running"
  assert method.init(jax.random.key(0), None, None).eval_stats == {}


@pytest.mark.parametrize(
  "update, message",
  [
    (dict(d_statistics="batch"), "unknown dgm.d_statistics"),
    (dict(statistics_images=0), "dgm.statistics_images must be >= 1"),
  ],
)
def test_bad_statistics_input_is_one_line(update, message):
  config = dgm_two_tasks.config(**update)
  with pytest.raises(ConfigError, match=message) as err:
    config_lib.validate(config)
  assert "\n" not in str(err.value)


def test_replay_is_refused_with_ten_classes_a_task():
  config = dgm_two_tasks.config(d_statistics="replay")
  config.dataset = "dgm-imagenet50"
  with pytest.raises(ConfigError, match="d_statistics=replay") as err:
    dgm_config.validate(config)  # the method's own check, before the data's
  assert "\n" not in str(err.value)


@pytest.mark.slow
def test_replay_changes_evaluation_only(dgm_two_task_run, tmp_path):
  """Same seed, ``replay`` vs ``running``: G and D (params and running statistics) equal
  bit for bit after each task; the replay run's class-IL row is D's accuracy with its
  evaluation statistics, which are not the running ones."""
  _, running_hooks, running_workdir = dgm_two_task_run
  dataset, hooks, end_task = tiny_dataset(), {}, DGM.end_task

  def spy(self, state, task):
    out = end_task(self, state, task)
    hooks[task.index] = jax.device_get(out)
    return out

  config = dgm_two_tasks.config(d_statistics="replay")
  with pytest.MonkeyPatch.context() as m:
    m.setattr(DGM, "end_task", spy)
    m.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    results = trainer.train_and_evaluate(config, str(tmp_path / "replay"))
    exp = trainer.Experiment(config, 0)
    # The diagnostic's "replayed" way on the running run's checkpoints.
    records = diagnostic.diagnose(running_workdir, per_class=config.dgm.statistics_images)
  images, labels = exp.benchmark.test_set()
  matrix = results["class_il"]["matrix"]
  for t in (0, 1):
    ours, theirs = hooks[t], running_hooks[t][1]
    for name in ("g", "g_stats", "d", "d_stats"):
      for a, b in zip(jax.tree.leaves(getattr(ours, name)), jax.tree.leaves(getattr(theirs, name))):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} after task {t + 1}")
    gaps = jax.tree.leaves(
      jax.tree.map(lambda a, b: np.max(np.abs(a - b)), ours.eval_stats, ours.d_stats)
    )
    assert max(gaps) > 1e-3
    rows = np.flatnonzero(labels <= t)
    _, logits, _ = exp.method._d_apply(ours.d, ours.eval_stats, to_unit(images[rows]), False)
    predicted = np.argmax(np.asarray(logits)[:, : t + 1], -1)
    expected = [100.0 * np.mean(predicted[labels[rows] == c] == c) for c in range(t + 1)]
    np.testing.assert_allclose(matrix[t + 1][: t + 1], expected, atol=1e-3)
  for t, record in enumerate(records):
    np.testing.assert_allclose(record["replayed"]["per_class"], matrix[t + 1][: t + 1], atol=1e-3)
