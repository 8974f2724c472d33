"""DGM's ImageNet generator (methods/dgm/generator_resnet.py): its count
(docs/dgm.md#parameter-counts), the HAT guarantee, the ImageNet growth rule
(docs/dgm.md#imagenet-growth), and a NumPy re-computation of the forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import generator_resnet as rg
from dynamos_jax.methods.dgm import growth_resnet, hat


def allocated_exist(sizes, params) -> tuple[jax.Array, ...]:
  """Existence masks of the allocated entries (idle shortcuts included): the entries
  the masks, the regulariser and the cumulative masks cover."""
  return rg.weight_exist([tuple(p) for p in np.asarray(sizes)], [w.shape for w in params["w"]])


def used_count(spec: rg.ResNetGeneratorSpec, counts) -> int:
  """The masked weights a task with ``counts`` [10] runs on (idle shortcuts left out)."""
  pairs = rg.layer_pairs(spec, np.asarray(counts))
  return int(sum(int(i) * int(o) * k * k for (i, o), k in zip(pairs, rg.KERNELS)))


def _set_heads(spec, params, task, active, key):
  w, b = rg.head_init(key, spec, active, params["head"].shape[1])
  c = spec.classes_per_task
  return dict(
    params,
    head=params["head"].at[task * c : (task + 1) * c].set(w),
    head_bias=params["head_bias"].at[task * c : (task + 1) * c].set(b),
  )


def _pad_like(xs, params):
  return tuple(gen.pad(x, w.shape) for x, w in zip(xs, params["w"]))


def test_count_and_initialisation_at_the_start():
  f, nz = 64, 128
  spec = rg.ResNetGeneratorSpec(ngf=f, nz=nz)
  params, stats, sizes = rg.init(jax.random.key(0), spec)
  # Independently: fc1 nz x 16 f, per block two 3x3 f -> f convs and one (idle) 1x1 f -> f.
  expected = nz * 16 * f + 3 * (2 * f * f * 3 * 3 + f * f * 1 * 1)
  assert expected == 364544
  assert rg.masked_count(sizes) == expected
  exist = allocated_exist(sizes, params)
  assert (
    sum(int(jnp.sum(x)) * w.shape[2] * w.shape[3] for x, w in zip(exist, params["w"])) == expected
  )
  assert sum(w.size for w in params["w"]) == expected  # f = 64: no padding at multiple 8
  assert all(e.shape == w.shape for e, w in zip(params["emb"], params["w"]))
  # The 364 544 counts the three 1x1 shortcuts although task 0 runs them as identities.
  counts = spec.start_counts()
  assert [int(counts[rg.short(b)]) for b in range(3)] == [0, 0, 0]
  assert used_count(spec, counts) == expected - 3 * f * f
  # The reference's logged size: the blocks plus an unused [10, 16 f] embedding.
  assert rg.logged_count(spec, sizes) == 10 * 16 * f + 3 * (2 * 9 * f * f + f * f)
  # fc1 Xavier gain 1 with a Linear's fans (nz, 16 f); convs gain sqrt 2 with C k^2 fans.
  bounds = {
    rg.FC: np.sqrt(6 / (nz + 16 * f)),
    rg.conv1(0): np.sqrt(2) * np.sqrt(6 / (18 * f)),
    rg.short(2): np.sqrt(2) * np.sqrt(6 / (2 * f)),
  }
  for l, bound in bounds.items():
    top = float(jnp.max(jnp.abs(params["w"][l])))
    assert 0.99 * bound < top <= bound
  scale = np.asarray(params["scale"][0][0])  # PyTorch 1.0's BN default U(0, 1), bias 0
  assert scale.min() >= 0 and scale.max() <= 1 and abs(scale.mean() - 0.5) < 0.15
  assert float(jnp.max(jnp.abs(params["scale"][3][1:]))) == 0.0


def test_output_is_32x32x3_in_range_and_heads_are_per_class():
  spec = rg.ResNetGeneratorSpec(ngf=8, nz=16, num_tasks=2, classes_per_task=2)
  params, stats, sizes = rg.init(jax.random.key(1), spec)
  params = _set_heads(spec, params, 0, 8, jax.random.key(2))
  params["bias"] = tuple(b.at[0].set(3.0) for b in params["bias"])  # push tanh towards +-1
  z = gen.noise(jax.random.key(3), 6, 16, jnp.zeros(6, jnp.int32), 2)
  z = z.at[3:].set(z[:3])
  labels = jnp.array([0, 0, 0, 1, 1, 1])
  masks = tuple(jnp.ones(w.shape) for w in params["w"])
  counts = spec.start_counts()
  for train in (True, False):
    out, new = rg.forward(spec, params, stats, z, 0, masks, counts, labels, train=train)
    assert out.shape == (6, 32, 32, 3)
    assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.max(jnp.abs(out))) <= 1.0
    assert float(jnp.max(jnp.abs(out))) > 0.5
  # Same noise, other class: another head.
  assert float(jnp.max(jnp.abs(out[:3] - out[3:]))) > 1e-3
  # Jitted with the task and the counts traced: the same images.
  jitted = jax.jit(
    lambda t, c: rg.forward(spec, params, stats, z, t, masks, c, labels, train=False)[0]
  )
  np.testing.assert_allclose(jitted(jnp.int32(0), jnp.asarray(counts)), out, rtol=1e-5, atol=1e-5)
  # Train mode moved only task 0's statistics; padded rows stay out of them.
  np.testing.assert_array_equal(new["mean"][2][1], stats["mean"][2][1])
  valid = jnp.array([True] * 4 + [False] * 2)
  a, _ = rg.forward(spec, params, stats, z, 0, masks, counts, labels, True, valid)
  b, _ = rg.forward(spec, params, stats, z.at[4:].set(50.0), 0, masks, counts, labels, True, valid)
  np.testing.assert_allclose(a[:4], b[:4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("delta, c0", [(0, 8), (1, 9), (16 * 16, 9), (16 * 16 + 1, 10)])
def test_linear_growth_rounds_to_whole_4x4_channels(delta, c0):
  spec = rg.ResNetGeneratorSpec(ngf=8, nz=16)
  sizes, counts = growth_resnet.grown_sizes(spec, spec.start_sizes(), [delta] + [0] * 9)
  # 16 f = 128 outputs + ceil(delta / nz), rounded up to a multiple of 16.
  assert 16 * sizes[rg.FC, 1] == -(-(128 + -(-delta // 16)) // 16) * 16 == 16 * c0
  assert counts[0] == c0 and sizes[rg.conv1(0), 0] == c0


def test_block_growth_credit_and_equalised_shortcut():
  spec = rg.ResNetGeneratorSpec(ngf=8, nz=16, num_tasks=2)
  start = spec.start_sizes()
  delta = [40, 100, 200, 30, 0, 0, 40, 144, 144, 0]
  sizes, counts = growth_resnet.grown_sizes(spec, start, delta)
  # By hand: fc 128 + ceil(40 / 16) = 131 -> 144 outputs, 9 channels. Block 1 (in 8 -> 9):
  # conv1 ceil((100 - 1 * 8 * 9) / (8 * 9)) = 1 -> 9; conv2 ceil((200 - 1 * 8 * 9) / 72) = 2
  # -> 10; 9 != 10: the shortcut (no growth of its own under the code's rule) takes 9 -> 10.
  # Block 2 (in 10): nothing reserved, 10 != 8: shortcut 10 -> 8. Block 3 (in 8): conv1
  # ceil(144 / 72) = 2 -> 10, conv2 (144 - 2 * 8 * 9) = 0 -> 8; 8 == 8: shortcut idle, kept.
  assert sizes.tolist() == [
    [16, 9],
    [9, 9],
    [9, 10],
    [9, 10],
    [10, 8],
    [8, 8],
    [10, 8],
    [8, 10],
    [10, 8],
    [8, 8],
  ]
  assert counts.tolist() == [9, 9, 10, 10, 8, 8, 8, 10, 8, 0]
  assert rg.masked_count(sizes) == (
    16 * 144 + 81 * 9 + 90 * 9 + 90 + 80 * 9 + 64 * 9 + 80 + 80 * 9 + 80 * 9 + 64
  )
  # With the 1x1 kernel in the shortcut's credit (block 1's shortcut reserving nothing now),
  # block 2's grows by ceil((40 - 2 * 8) / 8) = 3 to 11 outputs, more than conv2's 8: conv2
  # is raised to 11. Block 1's, reserving 30, would grow by ceil((30 - 1 * 8) / 8) = 3 too.
  sizes_k, counts_k = growth_resnet.grown_sizes(
    spec, start, delta[:3] + [0] + delta[4:], shortcut_rule="kernel"
  )
  assert sizes_k[rg.short(1)].tolist() == [10, 11] and sizes_k[rg.conv2(1)].tolist() == [8, 11]
  assert sizes_k[rg.conv1(2), 0] == 11 and counts_k[rg.short(1)] == 11
  assert growth_resnet.grown_sizes(spec, start, delta, shortcut_rule="kernel")[0][
    rg.short(0)
  ].tolist() == [9, 11]
  # The denominators: the ImageNet code divides by the inputs before the growth (8 x 9),
  # the MNIST code's rule by those after it (9 x 9). fc1 grows 8 -> 9 channels; block 1's
  # conv1: ceil((152 - 1 * 8 * 9) / 72) = 2, but ceil(80 / 81) = 1.
  grow_delta = [16, 152] + [0] * 8
  sizes_o, _ = growth_resnet.grown_sizes(spec, start, grow_delta)
  sizes_n, _ = growth_resnet.grown_sizes(spec, start, grow_delta, credit_inputs="new")
  assert sizes_o[rg.conv1(0)].tolist() == [9, 10] and sizes_n[rg.conv1(0)].tolist() == [9, 9]

  # The arrays follow: old blocks kept, new entries drawn at the new fans, padding zero.
  params, stats, _ = rg.init(jax.random.key(0), spec)
  widths = tuple(gen.round_up(w, 8) for w in rg.size_widths(sizes))
  grown, grown_stats = rg.grow(jax.random.key(1), spec, params, stats, start, sizes, widths)
  assert rg.widths_of(grown) == widths == (16, 16, 16, 8, 8, 16, 8)
  exist = allocated_exist(sizes, grown)
  for l, (old, new, x) in enumerate(zip(params["w"], grown["w"], exist)):
    i, o = start[l]
    np.testing.assert_array_equal(new[:i, :o], old[:i, :o])
    assert float(jnp.max(jnp.abs(new * (1 - x)))) == 0.0
  added = np.asarray(grown["w"][rg.conv2(0)])[:9, 8:10]  # block 1 conv2's new outputs
  bound = np.sqrt(2) * np.sqrt(6 / (9 * (9 + 10)))
  assert np.all(added != 0) and np.abs(added).max() <= bound
  added_fc = np.asarray(grown["w"][rg.FC])[:, 8]  # the new 4x4 channel of fc1
  assert np.all(added_fc != 0) and np.abs(added_fc).max() <= np.sqrt(6 / (16 + 144))
  assert all(s.shape == (2, w) for s, w in zip(grown_stats["var"], widths))
  assert float(grown_stats["var"][1][0, 8:].min()) == 1.0


def test_past_task_output_survives_training_of_free_weights():
  """HAT's guarantee with binary past masks (docs/dgm.md#imagenet-networks,
  docs/dgm.md#cumulative-masks-and-gradient-conditioning): task 0 runs on its own
  sub-network with its binary mask; task 1 trains everything with gradients conditioned
  by 1 - M. Task 0's images stay bit-identical; unconditioned, they would move."""
  spec = rg.ResNetGeneratorSpec(ngf=4, nz=8, num_tasks=2, classes_per_task=2)
  params, stats, sizes = rg.init(jax.random.key(0), spec)
  counts0 = spec.start_counts()
  params = _set_heads(spec, params, 0, 4, jax.random.key(1))
  rng = np.random.default_rng(0)
  binary0 = tuple(
    jnp.asarray(rng.integers(0, 2, w.shape), jnp.float32) * x
    for w, x in zip(params["w"], allocated_exist(sizes, params))
  )
  z = gen.noise(jax.random.key(2), 4, 8, jnp.zeros(4, jnp.int32), 0)
  labels0 = jnp.array([0, 1, 0, 1])
  before, _ = rg.forward(spec, params, stats, z, 0, binary0, counts0, labels0, train=False)

  # Grow so that block 1's shortcut runs for task 1.
  sizes1, counts1 = growth_resnet.grown_sizes(spec, sizes, [0, 0, 40, 0, 0, 0, 0, 0, 0, 0])
  assert counts1[rg.short(0)] > 0
  widths = tuple(gen.round_up(w, 8) for w in rg.size_widths(sizes1))
  params, stats = rg.grow(jax.random.key(3), spec, params, stats, sizes, sizes1, widths)
  binary0, cum = _pad_like(binary0, params), _pad_like(binary0, params)
  start, _ = rg.forward(spec, params, stats, z, 0, binary0, counts0, labels0, train=False)
  np.testing.assert_allclose(start, before, rtol=1e-5, atol=1e-6)

  params["scale"] = tuple(
    x.at[1].set(v)
    for x, v in zip(params["scale"], rg.bn_init(jax.random.key(4), rg.groups(counts1), widths))
  )
  params = _set_heads(spec, params, 1, int(counts1[8]), jax.random.key(5))
  exist1 = allocated_exist(sizes1, params)
  params["emb"] = tuple(
    jnp.asarray(rng.normal(size=w.shape), jnp.float32) * x for w, x in zip(params["w"], exist1)
  )
  labels1 = jnp.array([2, 3, 3, 2])

  def loss(p, st):
    masks = tuple(hat.mask(e, 2.0, x) for e, x in zip(p["emb"], exist1))
    out, st = rg.forward(spec, p, st, z, 1, masks, counts1, labels1, train=True)
    return jnp.mean((out - 0.7) ** 2), st

  def train(p, st, condition):
    for _ in range(3):
      grads, st = jax.grad(loss, has_aux=True)(p, st)
      idle = rg.short(2)  # task 1 runs block 3's shortcut as an identity: no gradient
      assert float(jnp.max(jnp.abs(grads["w"][idle]))) == 0.0
      for g, x in zip(grads["w"], exist1):
        assert float(jnp.max(jnp.abs(g * (1 - x)))) == 0.0  # nor on the padding
      step = jax.tree.map(lambda a, g: a - 0.5 * g, p, grads)
      if condition:
        step["w"] = tuple(
          w - 0.5 * g * hat.weight_conditioner_w(c, x)
          for w, g, c, x in zip(p["w"], grads["w"], cum, exist1)
        )
      p = step
    return p, st

  out1, _ = rg.forward(spec, params, stats, z, 1, exist1, counts1, labels1, train=False)
  trained, trained_stats = train(params, stats, condition=True)
  after, _ = rg.forward(spec, trained, trained_stats, z, 0, binary0, counts0, labels0, train=False)
  np.testing.assert_array_equal(after, start)
  for old, new in zip(stats["mean"] + stats["var"], trained_stats["mean"] + trained_stats["var"]):
    np.testing.assert_array_equal(new[0], old[0])
  moved, _ = rg.forward(spec, trained, trained_stats, z, 1, exist1, counts1, labels1, train=False)
  assert float(jnp.max(jnp.abs(moved - out1))) > 1e-3
  free, free_stats = train(params, stats, condition=False)
  drifted, _ = rg.forward(spec, free, free_stats, z, 0, binary0, counts0, labels0, train=False)
  assert float(jnp.max(jnp.abs(drifted - start))) > 1e-4


# --- a NumPy re-computation, NCHW with PyTorch-layout weights, at tiny widths --------------


def _np_conv(x, w):
  """Conv2d (pad k // 2) of x [N, C, H, W] with w [O, C, k, k], by shifted windows."""
  k = w.shape[-1]
  p = k // 2
  xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
  out = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:])
  for dy in range(k):
    for dx in range(k):
      out += np.einsum(
        "oc,nchw->nohw", w[:, :, dy, dx], xp[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
      )
  return out


def _np_forward(params, stats, masks, z, task, counts, labels, train, c_per_task):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  s = jax.tree.map(lambda a: np.asarray(a, np.float64), stats)
  m = [np.asarray(x, np.float64) for x in masks]
  g = [int(counts[i]) for i in (0, 1, 2, 4, 5, 7, 8)]
  batch = {}

  def torch_w(l, i, o):  # [C_in, C_out, k, k] -> PyTorch's [out, in, k, k], active part
    return (p["w"][l] * m[l])[:i, :o].transpose(1, 0, 2, 3)

  def bn(x, l):
    c = x.shape[1]
    if train:
      mu, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
      batch[l] = (mu, x.var((0, 2, 3), ddof=1))
    else:
      mu, var = s["mean"][l][task, :c], s["var"][l][task, :c]
    y = (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    return np.maximum(
      y * p["scale"][l][task, :c, None, None] + p["bias"][l][task, :c, None, None], 0
    )

  up = lambda x: x.repeat(2, axis=2).repeat(2, axis=3)
  # PyTorch's Linear weight [16 c0, nz], row 16 c + 4 h + w = entry [:, c, h, w] here.
  fc = (p["w"][0] * m[0])[:, : g[0]].transpose(1, 2, 3, 0).reshape(16 * g[0], z.shape[1])
  h = (np.asarray(z, np.float64) @ fc.T).reshape(-1, g[0], 4, 4)
  for b in range(3):
    width_in, hidden, width_out = g[2 * b], g[2 * b + 1], g[2 * b + 2]
    shortcut = up(h)  # the reference's order: upsample, then the 1x1 conv
    if counts[3 + 3 * b]:
      shortcut = _np_conv(shortcut, torch_w(3 + 3 * b, width_in, width_out))
    y = _np_conv(up(bn(h, 2 * b)), torch_w(1 + 3 * b, width_in, hidden))
    h = _np_conv(bn(y, 2 * b + 1), torch_w(2 + 3 * b, hidden, width_out)) + shortcut
  h = bn(h, 6)
  out = np.stack(
    [
      _np_conv(h[n : n + 1], p["head"][c][: g[6]].transpose(1, 0, 2, 3))[0]
      + p["head_bias"][c][:, None, None]
      for n, c in enumerate(np.asarray(labels))
    ]
  )
  return np.tanh(out).transpose(0, 2, 3, 1), batch


@pytest.mark.parametrize("train", [True, False])
def test_forward_equals_a_numpy_recomputation(train):
  spec = rg.ResNetGeneratorSpec(ngf=3, nz=5, num_tasks=2, classes_per_task=2)
  params, stats, sizes = rg.init(jax.random.key(0), spec, multiple=4)
  # Block 1 and 3 run their shortcut convs, block 2 an identity (in 5 == out 5).
  new = np.asarray([[5, 4], [4, 4], [4, 5], [4, 5], [5, 3], [3, 5], [3, 3], [5, 4], [4, 3], [5, 3]])
  counts = np.asarray([4, 4, 5, 5, 3, 5, 0, 4, 3, 3], np.int32)
  widths = tuple(gen.round_up(w, 4) for w in rg.size_widths(new))
  params, stats = rg.grow(jax.random.key(1), spec, params, stats, sizes, new, widths)
  rng = np.random.default_rng(1)
  noise_like = lambda x, lo=-1.0, hi=1.0: jnp.asarray(rng.uniform(lo, hi, x.shape), jnp.float32)
  # Garbage everywhere outside the task's counts: the existence masks must hide it.
  params = jax.tree.map(noise_like, params)
  params["w"] = tuple(noise_like(w, -0.6, 0.6) for w in params["w"])
  stats = {
    "mean": tuple(noise_like(x) for x in stats["mean"]),
    "var": tuple(noise_like(x, 0.5, 2.0) for x in stats["var"]),
  }
  masks = tuple(noise_like(w, 0.0, 1.0) for w in params["w"])
  z = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
  labels = jnp.array([3, 2, 3])
  got, new_stats = rg.forward(
    spec, params, stats, z, 1, masks, jnp.asarray(counts), labels, train=train
  )
  want, batch = _np_forward(params, stats, masks, z, 1, counts, labels, train, 2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  for l, (mu, var) in batch.items():
    c = mu.shape[0]
    np.testing.assert_allclose(
      new_stats["mean"][l][1, :c],
      0.9 * np.asarray(stats["mean"][l][1, :c]) + 0.1 * mu,
      rtol=1e-4,
      atol=1e-5,
    )
    np.testing.assert_allclose(
      new_stats["var"][l][1, :c], 0.9 * np.asarray(stats["var"][l][1, :c]) + 0.1 * var, rtol=1e-4
    )
    np.testing.assert_array_equal(new_stats["mean"][l][0], stats["mean"][l][0])
