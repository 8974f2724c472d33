"""The paper's analyses (activation rates, JSD, trial variability, t-SNE) and their figures."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy.spatial.distance import jensenshannon as scipy_js

from dynamos_jax import plots
from dynamos_jax.methods.dynamos import analysis
from dynamos_jax.methods.dynamos import plots as gate_plots
from dynamos_jax.methods.dynamos.resnet import ResNet

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("analysis")

BATCH = 4  # One batch size everywhere, so every gate mode compiles once.


@pytest.fixture(scope="module")
def tiny():
  """A tiny gated ResNet: actions are 4 agents x 16 channels = 64 columns."""
  model = ResNet(num_classes=10, gated=True, nf=8, temperature=0.15, reduction=4)
  init = jax.jit(lambda k1, k2, x: model.init({"params": k1, "gates": k2}, x, "sample", True))
  variables = init(jax.random.key(1), jax.random.key(2), jnp.zeros((2, 8, 8, 3), jnp.uint8))
  images = jax.random.randint(jax.random.key(3), (7, 8, 8, 3), 0, 256).astype(jnp.uint8)
  return model, variables, images


# ---------------------------------------------------------------- JSD


def test_jsd_of_identical_rows_is_zero_and_matrix_is_symmetric():
  rng = np.random.default_rng(0)
  rates = rng.uniform(0.05, 1.0, (4, 6))
  rates[3] = rates[0] / 3  # Same distribution after normalisation.
  jsd = analysis.jensen_shannon(rates)
  assert jsd.shape == (4, 4)
  np.testing.assert_array_equal(jsd, jsd.T)
  np.testing.assert_array_equal(np.diag(jsd), 0.0)
  assert jsd[0, 3] == pytest.approx(0.0, abs=1e-12)
  distinct = ~np.eye(4, dtype=bool)
  distinct[0, 3] = distinct[3, 0] = False
  assert np.all(jsd[distinct] > 1e-3)
  assert np.all(jsd <= 1.0)


def test_jsd_of_disjoint_supports_is_one_bit():
  rates = np.array([[0.9, 0.4, 0.0, 0.0], [0.0, 0.0, 0.5, 0.2]])
  assert analysis.jensen_shannon(rates)[0, 1] == pytest.approx(1.0)
  assert analysis.jensen_shannon(rates, base=np.e)[0, 1] == pytest.approx(np.log(2))


def test_jsd_two_filters_by_hand():
  # P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
  # KL(P||M) = log2(4/3); KL(Q||M) = 1/2 log2(2/3) + 1/2 log2(2).
  rates = np.array([[0.8, 0.0], [0.3, 0.3]])
  expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
  assert analysis.jensen_shannon(rates)[0, 1] == pytest.approx(expected, rel=1e-12)
  assert expected == pytest.approx(0.311278, abs=1e-6)


def test_jsd_matches_scipy_on_random_rates():
  rates = np.random.default_rng(1).uniform(0, 1, (5, 64))
  rates[2, :10] = 0.0  # Zeros inside a row exercise 0 log 0 = 0.
  jsd = analysis.jensen_shannon(rates)
  for i in range(5):
    for j in range(5):
      assert jsd[i, j] == pytest.approx(scipy_js(rates[i], rates[j], base=2) ** 2, abs=1e-12)


@pytest.mark.parametrize(
  "bad", [[[0.0, 0.0], [0.5, 0.1]], [[np.nan, np.nan], [0.5, 0.1]], [[-0.1, 0.5], [0.5, 0.1]]]
)
def test_jsd_rejects_rows_that_are_no_distribution(bad):
  with pytest.raises(ValueError):
    analysis.jensen_shannon(np.array(bad))


def test_jsd_summary():
  jsd = np.array([[0.0, 0.02, 0.3], [0.02, 0.0, 0.1], [0.3, 0.1, 0.0]])
  s = analysis.jsd_summary(jsd)
  assert s["lowest_pair"] == (0, 1) and s["highest_pair"] == (0, 2)
  assert s["lowest"] == pytest.approx(2.0) and s["highest"] == pytest.approx(30.0)
  assert s["mean"] == pytest.approx(14.0) and s["scale"] == 100.0
  assert s["lowest_over_mean"] == pytest.approx(0.02 / 0.14)
  assert s["lowest_over_highest"] == pytest.approx(0.02 / 0.3)
  assert s["highest_over_lowest"] == pytest.approx(15.0)
  assert s["mean_over_lowest"] == pytest.approx(7.0)
  assert analysis.jsd_summary(jsd, scale=1.0)["mean"] == pytest.approx(0.14)


# ------------------------------------------------- rates and keep ratios


def test_activation_rates_class_and_task_wise():
  actions = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]], float)
  labels = np.array([0, 0, 1, 1, 2, 3])
  rates = analysis.activation_rates(actions, labels, 5)
  np.testing.assert_allclose(rates[:4], [[1, 0.5, 0.5], [0.5, 0, 1], [0, 0, 0], [1, 1, 1]])
  assert np.all(np.isnan(rates[4]))  # Class 4 has no samples.
  tasks = analysis.activation_rates(actions, labels // 2, 2)
  np.testing.assert_allclose(tasks, [[0.75, 0.25, 0.75], [0.5, 0.5, 0.5]])
  with pytest.raises(ValueError):
    analysis.activation_rates(actions, labels, 3)  # Label 3 is out of range.


def test_keep_ratios_per_agent_and_class():
  # 4 agents x 2 channels; class 0: agent 1 keeps both, agent 2 one of two, ...
  actions = np.array(
    [[1, 1, 1, 0, 0, 0, 1, 1], [1, 1, 0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1, 1]], float
  )
  ratios = analysis.keep_ratios(actions, np.array([0, 0, 1]), 2, num_agents=4)
  np.testing.assert_allclose(ratios, [[1.0, 0.5, 0.25, 0.75], [0.0, 0.0, 0.0, 1.0]])
  assert analysis.keep_ratios(actions, np.array([0, 0, 1]), 2, num_agents=2).shape == (2, 2)


def test_last_layer_is_the_last_quarter():
  x = np.arange(2 * 64).reshape(2, 64)
  np.testing.assert_array_equal(analysis.last_layer(x, 4), x[:, 48:])
  assert analysis.last_layer(np.zeros((3, 256)), 4).shape == (3, 64)


# -------------------------------------------------------------- collect


def test_collect_shapes_batching_and_threshold_determinism(tiny):
  model, variables, images = tiny
  out = analysis.collect(model, variables, images, "threshold", BATCH)  # 7 rows: a padded batch.
  assert out["logits"].shape == (7, 10)
  assert out["actions"].shape == out["attention"].shape == (7, 64)
  assert all(isinstance(v, np.ndarray) for v in out.values())
  again = analysis.collect(model, variables, images, "threshold", BATCH)
  for k in out:
    np.testing.assert_array_equal(out[k], again[k])
  np.testing.assert_array_equal(out["actions"], (out["attention"] >= 0).astype(np.float32))
  # The same numbers as one unbatched forward: padding and batching change nothing.
  logits, aux = jax.jit(lambda v, x: model.apply(v, x, "threshold", False))(variables, images)
  np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out["actions"], aux["actions"])


def test_collect_sample_mode_uses_the_key(tiny):
  model, variables, images = tiny
  with pytest.raises(ValueError):
    analysis.collect(model, variables, images, "sample", BATCH)
  a = analysis.collect(model, variables, images, "sample", BATCH, jax.random.key(5))
  b = analysis.collect(model, variables, images, "sample", BATCH, jax.random.key(5))
  c = analysis.collect(model, variables, images, "sample", BATCH, jax.random.key(6))
  np.testing.assert_array_equal(a["actions"], b["actions"])
  assert not np.array_equal(a["actions"], c["actions"])
  assert set(np.unique(a["actions"])) <= {0.0, 1.0}


# ------------------------------------------------------ trial variability


def test_trial_variability_keeps_only_correct_trials(monkeypatch):
  # 3 trials, 3 images, 4 agents x 2 channels. Last layer = columns 6, 7.
  # image 0: correct in trials 0, 1 with [1, 0], [1, 1]; trial 2 (wrong) has [0, 0].
  # image 1: never correct. image 2: correct only in trial 0 with [0, 1].
  last = np.array(
    [[[1, 0], [1, 1], [0, 1]], [[1, 1], [0, 0], [1, 1]], [[0, 0], [1, 0], [0, 0]]], np.float32
  )  # [T, N, 2]
  correct = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0]], bool)
  labels = np.array([0, 1, 2])
  calls = []

  def fake_collect(model, variables, images, mode, batch_size, key=None):
    assert mode == "sample" and key is not None
    t = len(calls) % 3
    calls.append(jax.random.key_data(key))
    actions = np.concatenate([1 - np.tile(last[t], 3), last[t]], axis=1)  # Decoys in 0-5.
    predictions = np.where(correct[t], labels, (labels + 1) % 3)
    return {
      "logits": np.eye(3, dtype=np.float32)[predictions],
      "actions": actions,
      "attention": np.zeros_like(actions),
    }

  monkeypatch.setattr(analysis, "collect", fake_collect)
  r = analysis.trial_variability(
    None, None, np.zeros((3, 8, 8, 3)), labels, 3, jax.random.key(0), num_agents=4
  )
  assert len(calls) == 3 and len({bytes(np.asarray(k)) for k in calls}) == 3  # Fresh key per trial.
  np.testing.assert_array_equal(r["actions"], last)
  np.testing.assert_array_equal(r["correct"], correct)
  np.testing.assert_array_equal(r["num_kept"], [2, 0, 1])
  np.testing.assert_allclose(r["always_on"][[0, 2]], [0.5, 0.5])
  np.testing.assert_allclose(r["always_off"][[0, 2]], [0.0, 0.5])
  np.testing.assert_allclose(r["variable"][[0, 2]], [0.5, 0.0])
  assert np.isnan(r["always_on"][1]) and np.isnan(r["variable"][1])
  # Aggregates over images with >= 2 kept trials: image 0 alone.
  assert (r["mean_always_on"], r["mean_always_off"], r["mean_variable"]) == (0.5, 0.0, 0.5)
  assert r["num_aggregated"] == 1
  np.testing.assert_array_equal(analysis.kept_trials(r, 0), [[1, 0], [1, 1]])
  assert analysis.kept_trials(r, 1).shape == (0, 2)
  loose = analysis.trial_variability(
    None, None, np.zeros((3, 8, 8, 3)), labels, 3, jax.random.key(0), num_agents=4, min_kept=1
  )
  assert loose["num_aggregated"] == 2
  assert loose["mean_always_off"] == pytest.approx(0.25)
  assert loose["mean_variable"] == pytest.approx(0.25)


def test_trial_variability_on_a_tiny_network(tiny):
  model, variables, images = tiny
  key = jax.random.key(7)
  first = analysis.collect(model, variables, images, "sample", BATCH, jax.random.split(key, 3)[0])
  labels = np.argmax(first["logits"], -1)  # Trial 0 is then correct for every image.
  r = analysis.trial_variability(
    model, variables, images, labels, 3, key, num_agents=4, batch_size=BATCH
  )
  assert r["actions"].shape == (3, 7, 16)  # The last quarter of 64 columns.
  np.testing.assert_array_equal(r["actions"][0], first["actions"][:, 48:])
  np.testing.assert_array_equal(r["correct"], r["predictions"] == labels)
  assert r["correct"][0].all() and np.all(r["num_kept"] >= 1)
  total = r["always_on"] + r["always_off"] + r["variable"]
  np.testing.assert_allclose(total, 1.0)
  assert np.all((r["variable"] >= 0) & (r["variable"] <= 1))


# ------------------------------------------------------------------ t-SNE


def test_tsne_shape_determinism_and_clusters():
  rng = np.random.default_rng(0)
  classes = np.repeat(np.arange(4), 10)
  x = rng.normal(0, 0.3, (40, 64)) + 4.0 * np.eye(64)[classes * 5]
  # One thread: OpenMP's default only slows this tiny case on a busy machine.
  a = analysis.tsne(x, seed=3, max_iter=500, num_threads=1)
  b = analysis.tsne(x, seed=3, max_iter=500, num_threads=1)
  small = analysis.tsne(x[:5], seed=0, max_iter=250, num_threads=1)
  assert a.shape == (40, 2) and np.all(np.isfinite(a))
  np.testing.assert_array_equal(a, b)
  d = np.linalg.norm(a[:, None] - a[None], axis=-1) + np.diag(np.full(40, np.inf))
  assert np.mean(classes[np.argmin(d, 1)] == classes) >= 0.95  # Clusters survive.
  assert small.shape == (5, 2) and np.all(np.isfinite(small))  # Perplexity 4 < N.


# ------------------------------------------------------------------ plots


def _png_size(path):
  with Image.open(path) as im:
    assert im.format == "PNG"
    return im.size


def test_every_plot_writes_a_png(tmp_path):
  rng = np.random.default_rng(0)
  rates = rng.uniform(0, 1, (10, 256))
  rates[4] = np.nan
  logs = [
    {
      "step": 10 * (i + 1),
      "task": 1 + i // 3,
      "phase": "train",
      "loss": 2.0 - 0.1 * i,
      "ce": 1.5 - 0.1 * i,
      "reinforce": -50.0 + i,
      "keep_ratio_1": 0.6,
      "keep_ratio_2": 0.7,
      "keep_ratio_3": 0.8,
      "keep_ratio_4": 0.9,
    }
    for i in range(6)
  ]
  logs[2].pop("reinforce")
  plain_logs = [{k: v for k, v in r.items() if not k.startswith("keep")} for r in logs]
  made = {
    "heat": plots.activation_heatmap(rates, tmp_path / "heat.png", separators=(64, 128, 192)),
    "heat40": plots.activation_heatmap(
      rates[:5, -40:],
      tmp_path / "sub" / "heat40.png",
      row_labels=[f"task {i}" for i in range(1, 6)],
      first_filter=216,
      ylabel="task",
    ),
    "jsd": gate_plots.jsd_matrix(
      analysis.jensen_shannon(rates[:4]), tmp_path / "jsd.png", labels=list("abcd")
    ),
    "tsne": gate_plots.tsne_scatter(
      rng.normal(size=(30, 2)), np.arange(30) % 10, tmp_path / "tsne.png"
    ),
    "trials": gate_plots.trial_variability(rng.integers(0, 2, (3, 64)), tmp_path / "trials.png"),
    "acc": plots.accuracy_matrix(
      [[10.0, 9.5, 11.0], [99.0, None, None], [80.5, 97.0], [70.0, 88.0, 96.0]],
      tmp_path / "acc.png",
    ),
    "curves": plots.training_curves(logs, tmp_path / "curves.png", keep_ratio_target=0.7),
    "curves_plain": plots.training_curves(plain_logs, tmp_path / "curves_plain.png"),
    "bars": gate_plots.keep_ratio_bars(
      rng.uniform(0, 1, (10, 4)), tmp_path / "bars.png", target=0.7
    ),
  }
  for name, path in made.items():
    assert path.endswith(".png") and (tmp_path / path).stat().st_size > 1000, name
    width, height = _png_size(path)
    assert width > 100 and height > 100, name
  # The keep-ratio panel appears only when keep ratios were logged.
  assert _png_size(made["curves"])[1] > _png_size(made["curves_plain"])[1]


def test_training_curves_draw_every_methods_loss_terms():
  logs = [
    {
      "step": 10,
      "task": 1,
      "epoch": 1,
      "phase": "main",
      "loss": 1.0,
      "ce": 0.9,
      "anchor": 0.0,
      "representation": 2.0,
      "train_accuracy": 0.5,
      "grad_norm": 3.0,
      "keep_ratio_1": 0.7,
      "buffer_seen": 10.0,
    }
  ]
  assert plots.loss_terms(logs) == ["loss", "anchor", "ce", "representation"]


def test_index_html_links_figures_relatively(tmp_path):
  out = plots.index_html(
    [("Fig. 3 <rates>", "fig 3.png", "Class-wise & task-wise."), ("JSD", "jsd.png", "x100")],
    tmp_path / "analysis" / "index.html",
  )
  text = (tmp_path / "analysis" / "index.html").read_text(encoding="utf-8")
  assert out == str(tmp_path / "analysis" / "index.html")
  assert 'src="fig%203.png"' in text and 'src="jsd.png"' in text
  assert "Fig. 3 &lt;rates&gt;" in text and "Class-wise &amp; task-wise." in text
  assert str(tmp_path) not in text and text.count("<figure>") == 2


def test_analyze_command_end_to_end(tiny_data, tiny_config, tmp_path, monkeypatch, capsys):
  import json
  import os

  from dynamos_jax import analyze, trainer

  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 3
  trainer.train_and_evaluate(tiny_config, str(tmp_path))
  numbers = analyze.analyze(str(tmp_path), trials=3, trial_images=8, tsne_points=0)
  out = tmp_path / "analysis"
  on_disk = json.loads((out / "analysis.json").read_text())
  assert on_disk["step"] == 15 and on_disk["tsne_points"] == len(tiny_data.test_labels)
  assert np.array(on_disk["class_rates"]).shape == (10, 64)  # nf=8: 4 agents x 16 filters
  assert np.array(on_disk["task_rates"]).shape == (5, 64)
  counts = np.bincount(tiny_data.test_labels, minlength=10)
  per_class = np.array([0.0 if v is None else v for v in on_disk["class_accuracy"]])
  assert [v is None for v in on_disk["class_accuracy"]] == list(counts == 0)
  assert np.isclose(per_class @ counts / counts.sum(), on_disk["test_accuracy"])
  jsd = np.array(on_disk["jsd"]["matrix_x100"])
  assert jsd.shape == (10, 10) and np.allclose(jsd, jsd.T) and np.all(np.diag(jsd) == 0)
  assert numbers["variability"]["trials"] == 3
  html = (out / "index.html").read_text()
  pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
  assert len(pngs) == 11 and "task_accuracy_bars.png" in pngs and all(p in html for p in pngs)

  # A class whose last-layer filters are all off (an early checkpoint) has no JSD:
  # analyze says so in one line and draws the rest.
  from dynamos_jax.methods.dynamos import analysis

  rates = analysis.activation_rates

  def silent_class_2(actions, labels, n):
    out = np.array(rates(actions, labels, n))
    if n == 10:
      out[2] = 0.0
    return out

  monkeypatch.setattr(analysis, "activation_rates", silent_class_2)
  numbers = analyze.analyze(str(tmp_path), trials=3, trial_images=8, tsne_points=0)
  assert "no active filter" in numbers["jsd"]["skipped"]
  assert "no JSD figure" in capsys.readouterr().err
  assert "jsd.png" not in (out / "index.html").read_text()


def test_analyze_without_agents_draws_accuracy_and_curves(tiny_data, tiny_config, tmp_path):
  import os

  from dynamos_jax import analyze, trainer

  tiny_config.method = "sgd"
  tiny_config.epochs = 1
  tiny_config.train.max_steps_per_task = 2
  trainer.train_and_evaluate(tiny_config, str(tmp_path))
  analyze.analyze(str(tmp_path))
  pngs = sorted(p for p in os.listdir(tmp_path / "analysis") if p.endswith(".png"))
  assert pngs == [
    "class_il_matrix.png",
    "task_accuracy_bars.png",
    "task_il_matrix.png",
    "training_curves.png",
  ]
