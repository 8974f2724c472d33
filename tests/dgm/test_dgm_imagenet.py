"""DGM with ten classes a task (methods/dgm/imagenet.py, benchmarks/one_class.py's ImageNet-50).

One tiny end-to-end run of dgm-imagenet50's first two tasks on a fake
ILSVRC-2012 folder (1,000 class folders, a few 40x36 JPEGs in the 50
selected ones) through the real loader, with the ResNet G (ngf 8) and a
one-block ResNet D of width 4; the hooks' states are kept and checked: the
HAT guarantee with binary past masks, the replay's classes and counts, the
masked aux logits and the grown aux head, the per-class heads, padding to
common widths, the benchmark's tasks and per-task matrix; and what a user
reads off it (docs/dgm.md#what-a-run-reports): mask statistics, generator size, per-class samples
and ``analyze``'s figures. The run's tests are the slow tier's; the fast tier
tests the ResNet family's parts (test_dgm_generator_resnet.py,
test_dgm_discriminator.py), the schedule and the refusals here.
"""

import dataclasses
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from dynamos_jax import analyze, task_arrays, trainer
from dynamos_jax import config as config_lib
from dynamos_jax.benchmarks import REGISTRY, register
from dynamos_jax.benchmarks.base import DeviceData
from dynamos_jax.benchmarks.one_class import ImageNet50
from dynamos_jax.data import imagenet
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.dgm import generator_resnet as rg
from dynamos_jax.methods.dgm import growth_resnet, plots
from dynamos_jax.methods.dgm import imagenet as dgm_imagenet
from dynamos_jax.methods.dgm import summary as dgm_summary
from dynamos_jax.methods.dgm.dgm import DGM

from conftest import ROOT

# The module's fixtures are built once, on one worker (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("dgm_imagenet")

if "dgm-imagenet-two" not in REGISTRY:

  @register
  class _TwoTasks(ImageNet50):
    """dgm-imagenet50's first two tasks (classes 0..19)."""

    name = "dgm-imagenet-two"
    num_tasks = 2


C, B, TRAIN = 10, 8, 3  # classes a task, batch, train images a class
SHORT = 13  # class 13 (task 1) has TRAIN - 1 images: N_1 = 29, floor(29 / 10) = 2 a class


def _fake_ilsvrc(root):
  """ROOT/train/<wnid>/ for 1,000 wnids, JPEGs in the 50 selected; ROOT/val/<wnid>/ one each."""
  wnids = [f"n{i:08d}" for i in range(imagenet.NUM_SYNSETS)]
  rng = np.random.default_rng(0)
  for w in wnids:
    os.makedirs(os.path.join(root, "train", w))
  for label, position in enumerate(imagenet.SELECTION):
    w = wnids[position]
    os.makedirs(os.path.join(root, "val", w))
    for split, n in (("train", TRAIN - (label == SHORT)), ("val", 1)):
      for i in range(n):
        pixels = rng.integers(0, 60, (36, 40, 3)) + 3 * label
        Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, split, w, f"{w}_{i}.JPEG"))


CONFIG = os.path.join(ROOT, "configs", "dgm_imagenet50.py")


def _imagenet_config():
  spec = importlib.util.spec_from_file_location("dgm_imagenet50", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _config(path):
  """configs/dgm_imagenet50.py at tiny sizes on the first two tasks."""
  c = _imagenet_config()
  c.dataset, c.data.path = "dgm-imagenet-two", path
  c.dgm.update(ngf=8, ndf=4, d_blocks=1, loops="scan")
  c.batch_size, c.epochs, c.train.max_steps_per_task = B, 1, 3
  c.train.chunk_size, c.train.progress, c.train.eval_batch_size = 1, False, 64
  c.checkpoint.every_steps = 1000
  return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(results, method, config, {hook: {task: (state in, state out)}}) of the tiny run."""
  root = str(tmp_path_factory.mktemp("ilsvrc"))
  _fake_ilsvrc(root)
  hooks = {"begin_task": {}, "end_task": {}, "method": []}

  def spy(name):
    original = getattr(DGM, name)

    def hook(self, state, task):
      out = original(self, state, task)
      hooks[name][task.index] = (jax.device_get(state), jax.device_get(out))
      hooks["method"].append(self)
      return out

    return hook

  config = _config(root)
  config_lib.validate(config)
  hooks["workdir"] = str(tmp_path_factory.mktemp("run"))  # analyze's input (the summaries)
  with pytest.MonkeyPatch.context() as m:
    for name in ("begin_task", "end_task"):
      m.setattr(DGM, name, spy(name))
    results = trainer.train_and_evaluate(config, hooks["workdir"])
  return results, hooks["method"][0], config, hooks


def _past_images(method, state, classes, n=4):
  base = jax.random.normal(jax.random.key(7), (n, method.spec.nz))
  return method.family.samples(state, classes, n, base)


@pytest.mark.slow
def test_results_hold_the_per_task_matrix(run):
  results, method, _, _ = run
  assert (method.resnet, method.classes_per_task, method.num_classes) == (True, C, 50)
  matrix = results["class_il"]["matrix"]
  assert len(matrix) == 3 and all(len(row) == 2 for row in matrix)
  assert matrix[1][1] is None and matrix[2][1] is not None
  # One test image a class: a task's entry is a multiple of 10 % (ten classes, balanced).
  for row in matrix[1:]:
    for v in row:
      assert v is None or abs(v / 10 - round(v / 10)) < 1e-9


@pytest.mark.slow
def test_hat_guarantee_with_binary_past_masks(run):
  """Task 0's images from its binary masks: identical after training task 1."""
  _, method, _, hooks = run
  after_task0 = hooks["end_task"][0][1]
  after_task1 = hooks["end_task"][1][0]  # before task 1's own growth
  np.testing.assert_array_equal(
    _past_images(method, after_task0, C), _past_images(method, after_task1, C)
  )
  # Not vacuous: task 1 moved G's weights (its free entries).
  moved = [bool(np.any(a != b)) for a, b in zip(after_task0.g["w"], after_task1.g["w"])]
  assert any(moved)
  # Nor are task 0's masks empty: some weights are reserved and were frozen.
  assert int(np.sum(after_task0.reserved)) > 0


@pytest.mark.slow
def test_growth_records_sizes_counts_and_next_embeddings(run):
  _, method, _, hooks = run
  before, after = hooks["end_task"][0]
  sizes, counts = np.asarray(before.sizes), np.asarray(before.counts[0])
  np.testing.assert_array_equal(sizes, method.spec.start_sizes())
  cum = [np.asarray(c) for c in after.cum]
  ones = np.asarray([int(c.sum()) for c in cum])
  np.testing.assert_array_equal(np.asarray(after.reserved), ones)
  new_sizes, new_counts = growth_resnet.grown_sizes(method.spec, sizes, ones)
  np.testing.assert_array_equal(np.asarray(after.sizes), new_sizes)
  np.testing.assert_array_equal(np.asarray(after.counts[1]), new_counts)
  np.testing.assert_array_equal(np.asarray(after.counts[0]), counts)
  # The next task's embeddings start at 6 / s_max (the code's expand_embeddings).
  assert all(np.all(np.asarray(e) == np.float32(6.0 / method.smax)) for e in after.g["emb"])
  # The padded arrays stay at multiples of 8 and hold the allocation.
  for w, (i, o) in zip(after.g["w"], new_sizes):
    assert w.shape[0] >= i and w.shape[1] >= o


@pytest.mark.slow
def test_replay_holds_every_past_class_with_its_counts(run):
  """Task 1's replay of task 0: floor(N_1 / 10) = 2 images a class, the set re-permuted
  every epoch, the same images (a fixed set), nothing past the set's 20 slots."""
  _, method, _, hooks = run
  state = jax.tree.map(jnp.asarray, hooks["begin_task"][1][1])
  n1 = int(state.samples)
  assert n1 == C * TRAIN - 1 and method.replay_slots == C * TRAIN
  batches = int(state.batches)
  replay = jax.jit(lambda s, p: method.family.replay(s, p, B, 1))
  epochs = []
  for epoch in range(2):
    s = state.replace(step_in_task=jnp.int32(epoch * batches))
    out = [jax.device_get(replay(s, jnp.int32(p))) for p in range(batches)]
    images = np.concatenate([o[0][0] for o in out])
    labels = np.concatenate([o[1][0] for o in out])
    valid = np.concatenate([o[2][0] for o in out])
    assert valid.sum() == C * (n1 // C) == 20 and not valid[20:].any()
    np.testing.assert_array_equal(np.bincount(labels[valid], minlength=C), [n1 // C] * C)
    epochs.append((images[valid], labels[valid]))
  (x0, y0), (x1, y1) = epochs
  assert not np.array_equal(y0, y1)  # re-permuted
  key = lambda x: np.lexsort(x.reshape(len(x), -1).T[:8])
  np.testing.assert_array_equal(x0[key(x0)], x1[key(x1)])
  np.testing.assert_array_equal(y0[key(x0)], y1[key(x1)])
  # Each replayed image comes from its label's head: swapping the heads of classes 2 and 5
  # changes exactly the images labelled 2 or 5.
  g = state.g
  swap = lambda x: x.at[jnp.asarray([2, 5])].set(x[jnp.asarray([5, 2])])
  swapped = state.replace(g=dict(g, head=swap(g["head"]), head_bias=swap(g["head_bias"])))
  for p in range(batches):
    images, labels, valid = jax.device_get(replay(state, jnp.int32(p)))
    other = jax.device_get(replay(swapped, jnp.int32(p)))[0]
    changed = np.any(images[0] != other[0], axis=(1, 2, 3))
    np.testing.assert_array_equal(changed[valid[0]], np.isin(labels[0], [2, 5])[valid[0]])


@pytest.mark.slow
def test_per_class_heads_are_picked_by_label(run):
  """G's image of a label: swapping two heads' weights swaps the images."""
  _, method, _, hooks = run
  state = jax.tree.map(jnp.asarray, hooks["end_task"][0][1])
  z = jax.random.normal(jax.random.key(3), (4, method.spec.nz))
  ex = dgm_imagenet.allocated(state.g, state.sizes)
  masks = method.family.past_masks(state, 0, ex)

  def images(g, label):
    labels = jnp.full((4,), label, jnp.int32)
    return np.asarray(
      rg.forward(method.spec, g, state.g_stats, z, 0, masks, state.counts[0], labels, False)[0]
    )

  g = state.g
  swap = lambda x: x.at[jnp.asarray([2, 5])].set(x[jnp.asarray([5, 2])])
  swapped = dict(g, head=swap(g["head"]), head_bias=swap(g["head_bias"]))
  np.testing.assert_array_equal(images(swapped, 2), images(g, 5))
  np.testing.assert_array_equal(images(swapped, 5), images(g, 2))
  assert not np.array_equal(images(g, 2), images(g, 5))


@pytest.mark.slow
def test_unseen_classes_masked_and_aux_head_grown(run):
  _, method, _, hooks = run
  state = hooks["end_task"][0][1]
  x = jnp.zeros((3, 32, 32, 3), jnp.uint8)
  logits = np.asarray(method.predict(jax.tree.map(jnp.asarray, state), x, None, "main"))
  assert logits.shape == (3, 50)
  assert np.all(np.isfinite(logits[:, :C])) and np.all(logits[:, C:] == -np.inf)
  before, after = hooks["begin_task"][1]
  kb, ka = np.asarray(before.d["aux"]["kernel"]), np.asarray(after.d["aux"]["kernel"])
  np.testing.assert_array_equal(ka[:, :C], kb[:, :C])
  assert not np.any(ka[:, C:] == kb[:, C:])
  bound = np.sqrt(6.0 / (ka.shape[0] + 2 * C))  # Xavier on the code's Linear(F -> 20)
  assert np.abs(ka[:, C:]).max() <= bound and "bias" not in after.d["aux"]
  assert not np.array_equal(after.d["critic"]["kernel"], before.d["critic"]["kernel"])
  np.testing.assert_array_equal(after.d["stem"]["kernel"], before.d["stem"]["kernel"])


@pytest.mark.slow
def test_padding_to_wider_widths_changes_no_image(run):
  _, method, _, hooks = run
  state = hooks["end_task"][0][1]
  wider = tuple(w + 8 for w in rg.widths_of(state.g))
  padded = method.family.common_shape([state, method.family.pad(state, wider)])[0]
  assert rg.widths_of(padded.g) == wider
  np.testing.assert_array_equal(_past_images(method, padded, C), _past_images(method, state, C))


@pytest.mark.slow
def test_benchmark_tasks_and_per_task_evaluation(run):
  _, method, config, _ = run
  data = DeviceData.load(config, "imagenet50")
  b = REGISTRY["dgm-imagenet-two"](config, data, jax.random.key(0), joint=False)
  labels = np.asarray(data.host.train_labels)
  for t in range(2):
    assert set(labels[b.task_indices[t]]) == set(range(C * t, C * t + C))
    assert list(b.task_data(t).classes) == list(range(C * t, C * t + C))
  assert len(b.task_indices[1]) == C * TRAIN - 1 and len(b.validation_set()[1]) == 0
  # Reshuffled every epoch: the same samples, another order.
  e0, e1 = (
    np.asarray(b.epoch_data(1, e).order)[np.asarray(b.epoch_data(1, e).mask)] for e in range(2)
  )
  assert sorted(e0) == sorted(b.task_indices[1]) == sorted(e1) and list(e0) != list(e1)
  # Always class 1: class-IL 100 % on class 1 only (task 0: 10 %); task-IL: the argmax
  # over the task's classes of a one-hot on class 1 is class 1 in task 0, the task's first
  # class (all logits 0) in task 1.
  one = lambda images, task: jax.nn.one_hot(jnp.full(images.shape[:1], 1), 50)
  scores = b.evaluate(one, batch_size=16)
  assert scores["class_il"] == pytest.approx([10.0, 0.0])
  assert scores["task_il"] == pytest.approx([10.0, 10.0])
  images, y = b.task_test_set(1)
  assert sorted(y) == list(range(C, 2 * C)) and images.shape[0] == C


def test_validate_refuses_a_missing_source(tmp_path):
  c = _imagenet_config()
  with pytest.raises(ConfigError, match="no ILSVRC-2012 folder at data.path=''"):
    config_lib.validate(c)
  c.data.path = str(tmp_path / "absent")
  with pytest.raises(ConfigError, match="no ILSVRC-2012 folder"):
    config_lib.validate(c)
  c.data.source = "bundled"
  with pytest.raises(ConfigError, match="no ILSVRC-2012 loader for data.source='bundled'"):
    config_lib.validate(c)
  c.data.source, c.data.path = "files", str(tmp_path)
  config_lib.validate(c)
  c.dgm.selection = "best_valid"
  with pytest.raises(ConfigError, match="holds no validation images"):
    config_lib.validate(c)
  c.method = "dgm_joint"  # configs/dgm_imagenet50.py:jt
  with pytest.raises(ConfigError, match="no JT is built"):
    config_lib.validate(c)


def test_the_config_records_the_imagenet_codes_options():
  c = _imagenet_config()
  d = c.dgm
  assert (
    d.schedule,
    d.past_masks,
    d.aux_head,
    d.g_noise,
    d.onehot_dims,
    d.ndf,
    d.generator,
    c.data.source,
  ) == ("imagenet", "binary", "grow", "shared", 100, 64, "auto", "files")


def test_imagenet_schedule_by_hand():
  """s^e = 1/S + (S - 1/S)(e + 1)/I; s = 1/s^e + (s^e - 1/s^e) i / (floor(N / B) + 1)."""
  S, I, N = 100.0, 4, 20  # floor(20 / 8) + 1 = 3 batches in the ramp's denominator
  s, s_e = dgm_imagenet.scale(0, 0, I, N, B, S)
  assert float(s_e) == pytest.approx(0.01 + 99.99 / 4, rel=1e-6)
  assert float(s) == pytest.approx(1 / (0.01 + 99.99 / 4), rel=1e-6)
  s, s_e = dgm_imagenet.scale(3, 2, I, N, B, S)
  assert float(s_e) == pytest.approx(100.0, rel=1e-6)
  assert float(s) == pytest.approx(0.01 + (100.0 - 0.01) * 2 / 3, rel=1e-6)


# --- what a user reads off the run (docs/dgm.md#what-a-run-reports; summary.py, plots.py) ---

KERNELS = [4] + [3, 3, 1] * 3  # fc1's 4x4 "kernel", then conv1, conv2, the 1x1 shortcut
NAMES = ["fc1"] + [f"block{b}.{n}" for b in (1, 2, 3) for n in ("conv1", "conv2", "short")]


def _count(sizes):
  """Masked weights of an allocation [10, 2], from the shapes (independent of rg)."""
  return sum(int(i) * int(o) * k * k for (i, o), k in zip(np.asarray(sizes), KERNELS))


def _allocations(hooks):
  """The run's own records: sizes while task 0 and 1 trained, and after task 1's growth."""
  return [
    np.asarray(hooks["end_task"][0][0].sizes),
    np.asarray(hooks["end_task"][1][0].sizes),
    np.asarray(hooks["end_task"][1][1].sizes),
  ]


@pytest.mark.slow
def test_summary_mask_statistics_count_the_binarised_embeddings(run):
  _, method, _, hooks = run
  state = hooks["end_task"][1][1]
  sizes = _allocations(hooks)
  np.testing.assert_array_equal(method.family.allocations(state, 2), sizes)
  rows = dgm_summary.mask_statistics(method, state, 2)
  assert len(rows) == 20 and [r["name"] for r in rows] == NAMES * 2
  new_total = np.zeros(10, np.int64)
  for l in range(10):
    cum = np.zeros((0, 0, KERNELS[l], KERNELS[l]), bool)
    for t in range(2):
      i, o = sizes[t][l]
      b = np.asarray(state.past_emb[l][t])[:i, :o] >= 0  # sigmoid(S e) >= 1/2
      prev = np.pad(cum, [(0, i - cum.shape[0]), (0, o - cum.shape[1]), (0, 0), (0, 0)])
      row = rows[10 * t + l]
      assert (row["task"], row["layer"]) == (t, l + 1)
      assert row["entries"] == b.size == i * o * KERNELS[l] ** 2
      assert row["reserved"] == b.sum()
      assert (row["new"], row["reused"]) == ((b & ~prev).sum(), (b & prev).sum())
      cum = b | prev
      assert row["free_after"] == b.size - cum.sum()
      new_total[l] += row["new"]
  # The masks' ones over both tasks are what end_task reserved (its cumulated masks).
  np.testing.assert_array_equal(new_total, np.asarray(state.reserved))
  assert new_total.sum() > 0 and sizes[2].sum() > sizes[0].sum()  # not vacuous: it grew


@pytest.mark.slow
def test_summary_generator_size_counts_the_resnet_shapes(run):
  _, method, _, hooks = run
  state = hooks["end_task"][1][1]
  sizes = _allocations(hooks)
  size = dgm_summary.generator_size(method, state, 2)
  # ngf 8, nz 128 at the start: 128 * 16 * 8 + 3 (2 * 9 * 8 * 8 + 8 * 8) = 20 032.
  assert _count(sizes[0]) == 20_032 == rg.masked_count(method.spec.start_sizes())
  assert size["masked_params"] == _count(sizes[1]) == rg.masked_count(sizes[1])
  assert size["masked_params_grown"] == _count(sizes[2]) == rg.masked_count(state.sizes)
  counts = np.asarray(state.counts)
  # Each task: 7 BN (scale, bias) on its channel groups, 10 heads 3x3 O_3 -> 3 with bias.
  private = sum(
    2 * counts[t][[0, 1, 2, 4, 5, 7, 8]].sum() + C * (counts[t][8] * 27 + 3) for t in range(2)
  )
  assert size["weights_bytes"] == 4 * (_count(sizes[2]) + private)
  bits = _count(sizes[0]) + _count(sizes[1])
  assert size["masks_bitmap_bytes"] == -(-bits // 8)
  ones = sum(
    int((np.asarray(state.past_emb[l][t])[:i, :o] >= 0).sum())
    for t in range(2)
    for l, (i, o) in enumerate(sizes[t])
  )
  assert size["masks_sparse_bytes"] == 4 * ones


@pytest.mark.slow
def test_summary_samples_per_class_from_their_heads(run):
  _, method, config, hooks = run
  state = jax.tree.map(jnp.asarray, hooks["end_task"][1][1])
  reports = task_arrays.load(hooks["workdir"], config.seed)
  full = dgm_summary.samples(method, state, 2 * C)
  assert full.shape == (2 * C, dgm_summary.SAMPLES_PER_CLASS, 32, 32, 3) and full.dtype == np.uint8
  np.testing.assert_array_equal(reports[1]["samples"], full)  # what after_task kept
  assert reports[0]["samples"].shape[0] == C
  g = state.g
  swap = lambda x: x.at[jnp.asarray([12, 17])].set(x[jnp.asarray([17, 12])])
  swapped = state.replace(g=dict(g, head=swap(g["head"]), head_bias=swap(g["head_bias"])))
  # Without the one-hot prefix, the same noise in both rows: swapping heads swaps rows.
  plain = dataclasses.replace(method, onehot=False)
  a, b = (dgm_summary.samples(plain, s, 2 * C, n=2) for s in (state, swapped))
  order = list(range(2 * C))
  order[12], order[17] = 17, 12
  np.testing.assert_array_equal(b, a[order])
  assert not np.array_equal(a[12], a[17])
  # With it, row 12 is class 12's noise (one-hot 12 of 100 dims) through head 17.
  rows = dgm_summary.samples(method, swapped, 2 * C, n=2)
  base = dgm_summary.sample_noise(method, state, 2)
  z = base.at[:, :100].set(jax.nn.one_hot(jnp.full((2,), 12), 100))
  masks = tuple(
    jnp.asarray(np.asarray(e[1]) >= 0, jnp.float32)
    * dgm_imagenet.allocated(state.g, state.sizes)[l]
    for l, e in enumerate(state.past_emb)
  )
  x = rg.forward(
    method.spec, g, state.g_stats, z, 1, masks, state.counts[1], jnp.full((2,), 17), False
  )[0]
  np.testing.assert_array_equal(
    rows[12], np.clip(np.round(127.5 * (np.asarray(x) + 1)), 0, 255).astype(np.uint8)
  )


def test_sample_drift_by_the_class_to_task_map():
  """Two classes a task, 1-pixel images: class c is compared with its task c // 2's grid."""
  first = np.array([[[10]], [[20]]], np.uint8)
  second = np.array([[[61]], [[20]], [[7]], [[9]]], np.uint8)
  drift = plots.sample_drift([first, second], classes_per_task=2)
  np.testing.assert_allclose(drift[0], [0.0, 0.0])
  np.testing.assert_allclose(drift[1], [51 / 255, 0.0, 0.0, 0.0])


@pytest.mark.slow
def test_analyze_writes_the_dgm_figures_of_an_imagenet_run(run):
  _, method, config, hooks = run
  workdir = hooks["workdir"]
  numbers = analyze.analyze(workdir)["dgm"]
  out = os.path.join(workdir, "analysis")
  for name in (
    "dgm_at.png",
    "dgm_growth.png",
    "dgm_occupancy.png",
    "dgm_samples_task1.png",
    "dgm_samples_task2.png",
  ):
    with open(os.path.join(out, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
  state = hooks["end_task"][1][1]
  counts = np.asarray(state.counts)
  assert numbers["channels"] == counts[:, [0, 1, 2, 4, 5, 7, 8]].tolist()
  assert numbers["masked_params"] == [_count(s) for s in _allocations(hooks)]
  for row in dgm_summary.mask_statistics(method, state, 2):
    t, l = row["task"], row["layer"] - 1
    assert numbers["occupancy"]["new"][t][l] == pytest.approx(row["new"] / row["entries"])
    assert numbers["occupancy"]["reused"][t][l] == pytest.approx(row["reused"] / row["entries"])
  # Drift by class -> task: task 0's classes against their first grid; binary past masks
  # and frozen weights keep them (the HAT guarantee, seen in the reports) up to float
  # rounding: G grew in between, and XLA:CPU may sum the wider convolutions in another
  # order (seen on an Intel Xeon: one pixel of the grid one level off).
  reports = task_arrays.load(workdir, config.seed)
  first, second = (r["samples"].astype(np.float32) for r in reports)
  drift = numbers["sample_drift"]
  assert len(drift[0]) == C and len(drift[1]) == 2 * C
  assert drift[1][:C] == [float(np.mean(np.abs(second[c] - first[c]))) / 255 for c in range(C)]
  assert np.max(np.abs(second[:C] - first)) <= 1 and np.mean(second[:C] != first) < 1e-3
  assert drift[1][C:] == [0.0] * C
  sizes, counted = numbers["size_bytes"], numbers["generator"]
  arrays = len(np.load(os.path.join(out, "generator", "generator_weights.npz")).files)
  assert counted["weights_bytes"] <= sizes["weights"] < counted["weights_bytes"] + 400 * arrays
  assert counted["masks_sparse_bytes"] == 4 * sizes["mask_ones"] <= sizes["masks"]


@pytest.mark.slow
def test_checkpoint_grid_without_reports(run):
  """analyze's fallback grid: class c from the grid's noise with a 100-dim one-hot of c."""
  _, method, _, hooks = run
  state = hooks["end_task"][1][1]
  grid = plots.generated_grid(method, state, 2 * C, n=2)
  assert grid.shape == (2 * C, 2, 32, 32, 3) and np.all(np.abs(grid) <= 1)
  z = jax.random.normal(jax.random.key(plots._GRID_KEY), (2, method.spec.nz))
  z = z.at[:, :100].set(jax.nn.one_hot(jnp.full((2,), 13), 100))
  np.testing.assert_array_equal(grid[13], dgm_summary.generate(method, state, z, 13))
  assert not np.array_equal(grid[13], dgm_summary.generate(method, state, z, 3))
