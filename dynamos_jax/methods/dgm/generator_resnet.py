"""DGM's ImageNet generator: a masked ResNet (DGMw) at a per-task common shape.

See docs/dgm.md#imagenet-networks and docs/dgm.md#imagenet-growth.

  z [N, nz] -> fc1 masked Linear(nz -> 16 c0), no bias, viewed as c0 x 4 x 4     4x4
    -> block 1, 2, 3 (each: C_in -> C_out, x2 up)                   8x8, 16x16, 32x32
         shortcut: nearest x2 (+ a masked 1x1 conv when the task's C_in != C_out)
         main:     BN_t, ReLU, nearest x2, masked conv3x3 (C_in -> H),
                   BN_t, ReLU, masked conv3x3 (H -> C_out);  out = main + shortcut
    -> BN_t, ReLU -> head_c Conv(C_out -> 3, 3x3, pad 1, bias, unmasked), tanh   32x32x3

f = ngf = 64, nz = 128 at the start: c0 = H = C_in = C_out = f everywhere, so
the three shortcut convs (f x f x 1 x 1) exist but are idle (identity
shortcuts). As the reference (``networks/net_DGMw_imnet.py``), they are still
allocated, masked and counted: 128 * 16 f + 3 (2 * 9 f^2 + f^2) = 364 544.
Masks are DGMw's (one embedding per weight, ``hat.py``), BN_t (affine, eps
1e-5, momentum 0.1) is private to task t, head_c to class c (each task owns
``classes_per_task`` consecutive classes and heads).

Pure functions over a params dict, like ``generator_dcgan.py``. Ten masked
weights, in the reference's mask order (FC, then per block CONV1, CONV2, SHORT),
all in a [C_in, C_out, kh, kw] layout (fc1 as [nz, c0, 4, 4]: entry
[z, c, h, w] is PyTorch's weight[16 c + 4 h + w, z], so growing the linear
layer by 16 outputs appends one channel). Seven channel groups carry the
common widths P_g: (c0, H1, O1, H2, O2, H3, O3); block b reads group 2b,
its hidden layer is 2b + 1, its output 2b + 2; BN l normalises group l
(block b's BN1 = 2b, BN2 = 2b + 1, the output BN = 6).

  params = {"w", "emb": 10 arrays [C_in, C_out, k, k] at the common widths,
            "scale", "bias": 7 arrays [T, P_g] (BN_t),
            "head": [K, P_6, n_c, 3, 3], "head_bias": [K, n_c]}  (K = T * classes_per_task)
  stats  = {"mean", "var": 7 arrays [T, P_g]}

Two kinds of sizes. ``sizes`` int [10, 2]: each weight's allocated (in, out)
now (host side; the existence masks of the regulariser and cumulative masks).
``counts`` int [10]: what one task uses, (c0, H1, O1, S1, H2, O2, S2, H3, O3,
S3), S_b = O_b when block b's shortcut conv runs, 0 for an identity shortcut
(``spec.start_counts()``, then ``grown_sizes``; traced ok in ``forward``). The
padding and everything grown after a task never reach it: channel existence
masks zero them.

Growth (``grown_sizes``, docs/dgm.md#imagenet-growth) follows the reference's
``extand``: shapes fixed within a task, changed between tasks. Two places
where the code departs from the MNIST code's credit rule, both kept by
default and switchable: its block denominators use the input channels before
the growth (MNIST's code: after it), and its shortcut credit multiplies by
the weight's (out, in) instead of the 1x1 kernel, so a shortcut never grows
by its own reserved weights and simply takes conv2's width.

Initialisation (the reference's ``weights_init_g``, applied at construction and
on every expansion; read from the code, docs/dgm.md#initialisation): fc1
Xavier-uniform gain 1 (a Linear: fan_in nz, fan_out 16 c0), the block convs
Xavier-uniform gain sqrt 2 (Conv2d fans C k^2); BN is not touched
by it, so every BN_t, task 0's included, has PyTorch 1.0's default scale
U(0, 1), bias 0; heads PyTorch's Conv2d default U(+-1/sqrt(9 C_in)) for weight
and bias. Draws at the active shapes, then padded. *Inferred*: on growth all
new entries are drawn at the final new shape's fans, where the reference's
two-step shortcut expansion draws the input-growth entries at an intermediate
shape's (a slightly wider bound).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import generator_dcgan as gen

# The weights' order and the growth rule live in growth_resnet (host arithmetic only).
from dynamos_jax.methods.dgm.growth_resnet import FC, conv1, conv2, short

KERNELS = (4,) + (3, 3, 1) * 3  # fc1's 4x4 "kernel", then conv1, conv2, shortcut per block
HEAD_KERNEL = 3


@dataclasses.dataclass(frozen=True)
class ResNetGeneratorSpec:
  """Static description: ngf (f), nz, n_c (3), T tasks of ``classes_per_task`` classes."""

  ngf: int = 64
  nz: int = 128
  channels: int = 3
  num_tasks: int = 10
  classes_per_task: int = 10

  @property
  def num_classes(self) -> int:
    return self.num_tasks * self.classes_per_task

  def start_sizes(self) -> np.ndarray:
    """int [10, 2] the allocated (in, out) of each weight at construction (all f wide)."""
    f = self.ngf
    return np.asarray([(self.nz, f)] + [(f, f)] * 9, np.int32)

  def start_counts(self) -> np.ndarray:
    """int [10] task 0's counts: everything f wide, the three shortcuts idle (identity)."""
    return np.asarray([self.ngf] + [self.ngf, self.ngf, 0] * 3, np.int32)


def groups(counts):
  """The 7 channel-group counts (c0, H1, O1, H2, O2, H3, O3) of ``counts`` [10] (traced ok)."""
  return tuple(counts[i] for i in (0, 1, 2, 4, 5, 7, 8))


def layer_pairs(spec: ResNetGeneratorSpec, counts) -> list:
  """The (in, out) each weight runs at for task counts ``counts`` [10] (traced ok)."""
  g = groups(counts)
  pairs = [(spec.nz, g[0])]
  for b in range(3):
    width_in, hidden, width_out = g[2 * b], g[2 * b + 1], g[2 * b + 2]
    pairs += [(width_in, hidden), (hidden, width_out), (width_in, counts[short(b)])]
  return pairs


def weight_exist(pairs, shapes) -> tuple[jax.Array, ...]:
  """[C_in, C_out, 1, 1] float 1 on entries [0, in) x [0, out) of each weight (traced ok)."""
  return tuple(
    ((jnp.arange(s[0]) < i)[:, None] & (jnp.arange(s[1]) < o)[None, :]).astype(jnp.float32)[
      :, :, None, None
    ]
    for (i, o), s in zip(pairs, shapes)
  )


def channel_exist(group_counts, widths) -> tuple[jax.Array, ...]:
  """[P_g] float 1 on the active channels of each group."""
  return tuple((jnp.arange(p) < c).astype(jnp.float32) for c, p in zip(group_counts, widths))


def widths_of(params) -> tuple[int, ...]:
  """The 7 common group widths P_g."""
  return tuple(int(x.shape[1]) for x in params["scale"])


def weight_shapes(spec: ResNetGeneratorSpec, widths) -> list[tuple[int, ...]]:
  """The 10 weight shapes at group widths ``widths`` [7] (also the active shapes of sizes)."""
  shapes = [(spec.nz, widths[0], 4, 4)]
  for b in range(3):
    width_in, hidden, width_out = widths[2 * b], widths[2 * b + 1], widths[2 * b + 2]
    shapes += [(width_in, hidden, 3, 3), (hidden, width_out, 3, 3), (width_in, width_out, 1, 1)]
  return shapes


def size_widths(sizes) -> tuple[int, ...]:
  """The 7 group counts of an allocation ``sizes`` [10, 2] (each allocated shortcut fits)."""
  sizes = np.asarray(sizes)
  return tuple(int(sizes[l, 1]) for l in (0, 1, 2, 4, 5, 7, 8))


def masked_count(sizes) -> int:
  """The allocated masked weights (364 544 at f 64, nz 128; docs/dgm.md#parameter-counts)."""
  return int(sum(int(i) * int(o) * k * k for (i, o), k in zip(np.asarray(sizes), KERNELS)))


def logged_count(spec: ResNetGeneratorSpec, sizes) -> int:
  """The reference's ``total_size_n_params`` (its lambda_RU multiplier,
  docs/dgm.md#sparsity-regulariser): the
  block weights plus an unused embedding [10, 16 f] in place of fc1."""
  return 10 * 16 * spec.ngf + masked_count(sizes) - masked_count(np.asarray(sizes)[:1])


# --- forward -------------------------------------------------------------------------------


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
  """PyTorch's Conv2d (stride 1, pad k // 2, no bias): x [N, H, W, C_in], w [C_in, C_out, k, k]."""
  pad = w.shape[-1] // 2
  return jax.lax.conv_general_dilated(
    x,
    jnp.transpose(w, (2, 3, 0, 1)),
    window_strides=(1, 1),
    padding=((pad, pad), (pad, pad)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


def upsample(x: jax.Array) -> jax.Array:
  """Nearest x2 of x [N, H, W, C] -> [N, 2H, 2W, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _fit_channels(x: jax.Array, width: int) -> jax.Array:
  """x [..., C] cut or zero-padded to ``width`` channels (the identity shortcut)."""
  c = x.shape[-1]
  return x[..., :width] if c >= width else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - c)])


def forward(
  spec: ResNetGeneratorSpec,
  params,
  stats,
  z: jax.Array,
  task,
  masks,
  counts,
  labels: jax.Array,
  train: bool,
  sample_mask: jax.Array | None = None,
):
  """Images of task ``task`` from noise: (images f32 [N, 32, 32, n_c] in [-1, 1], stats).

  Args:
    params, stats: the generator's (module docstring).
    z: [N, nz] noise (its one-hot prefix already written, ``gen.noise``).
    task: int32 [] whose BN runs (traced ok).
    masks: 10 masks of the weights' shapes: the current task's soft ones
      (``hat.mask``) or a past task's binary ones.
    counts: int32 [10] the task's counts (module docstring; traced ok).
    labels: int32 [N] each sample's class, in [task C, (task + 1) C) with
      C = classes_per_task: it picks the sample's head.
    train: batch statistics, and BN_task's running statistics updated; else
      the running statistics (stats returned unchanged).
    sample_mask: bool [N], False rows (padding) stay out of the statistics.
  """
  if sample_mask is None:
    sample_mask = jnp.ones(z.shape[:1], bool)
  counts = jnp.asarray(counts)
  widths = widths_of(params)
  cexist = channel_exist(groups(counts), widths)
  # No weight existence masks needed: every weight's (in, out) are channel groups, whose
  # absent channels are zero on the way in and zeroed on the way out (so get no gradient).
  ws = [w * m for w, m in zip(params["w"], masks)]
  new = {"mean": list(stats["mean"]), "var": list(stats["var"])}

  def bn_relu(h, l):
    y, mu, var = gen.batch_norm(
      h,
      params["scale"][l][task],
      params["bias"][l][task],
      stats["mean"][l][task],
      stats["var"][l][task],
      sample_mask,
      train,
    )
    if train:
      m = gen.MOMENTUM
      new["mean"][l] = stats["mean"][l].at[task].set((1 - m) * stats["mean"][l][task] + m * mu)
      new["var"][l] = stats["var"][l].at[task].set((1 - m) * stats["var"][l][task] + m * var)
    # Absent channels would output ReLU(beta) of another task's rows: zero them.
    return jax.nn.relu(y) * cexist[l]

  h = jnp.einsum("nz,zchw->nhwc", z, ws[FC]) * cexist[0]
  for b in range(3):
    width_out = widths[2 * b + 2]
    # A 1x1 conv commutes with a nearest upsampling: convolve at the lower resolution.
    conv_short = _conv(h, ws[short(b)])
    shortcut = upsample(jnp.where(counts[short(b)] > 0, conv_short, _fit_channels(h, width_out)))
    y = _conv(upsample(bn_relu(h, 2 * b)), ws[conv1(b)])
    y = _conv(bn_relu(y, 2 * b + 1), ws[conv2(b)])
    h = (y + shortcut) * cexist[2 * b + 2]
  h = bn_relu(h, 6)
  out = _heads(spec, params, h, task, labels, cexist[6])
  return jnp.tanh(out), {"mean": tuple(new["mean"]), "var": tuple(new["var"])}


def _heads(spec, params, h, task, labels, exist):
  """The per-class heads on h [N, 32, 32, P_6]: [N, 32, 32, n_c] (no tanh)."""
  c, n_c = spec.classes_per_task, spec.channels
  # Only the task's C heads are evaluated, as C n_c output channels of one conv.
  w = jax.lax.dynamic_slice_in_dim(params["head"], task * c, c, axis=0)
  bias = jax.lax.dynamic_slice_in_dim(params["head_bias"], task * c, c, axis=0)
  w = w * exist[None, :, None, None, None]  # inputs: the task's active output channels
  kernel = jnp.transpose(w, (1, 0, 2, 3, 4)).reshape(w.shape[1], c * n_c, HEAD_KERNEL, HEAD_KERNEL)
  out = (_conv(h, kernel) + bias.reshape(-1)).reshape(*h.shape[:3], c, n_c)
  pick = jnp.clip(labels - task * c, 0, c - 1)
  return jnp.take_along_axis(out, pick[:, None, None, None, None], axis=3)[:, :, :, 0]


# --- initialisation and growth -----------------------------------------------------------


def _xavier(key, shape, linear: bool):
  """Xavier-uniform of a weight [C_in, C_out, k, k]: gain 1 with a Linear's fans for
  fc1 (fan_out = 16 c0), gain sqrt 2 with Conv2d's fans (C k^2) for the convs."""
  receptive = shape[2] * shape[3]
  fan_in = shape[0] if linear else shape[0] * receptive
  gain = 1.0 if linear else np.sqrt(2.0)
  bound = gain * np.sqrt(6.0 / (fan_in + shape[1] * receptive))
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def bn_init(key, group_counts, widths) -> tuple[jax.Array, ...]:
  """A task's 7 BN scales [P_g]: PyTorch 1.0's default U(0, 1) on the active channels."""
  return tuple(
    gen.pad(jax.random.uniform(jax.random.fold_in(key, l), (int(a),)), (p,))
    for l, (a, p) in enumerate(zip(group_counts, widths))
  )


def head_init(key, spec: ResNetGeneratorSpec, active: int, width: int):
  """One task's C heads: (w [C, width, n_c, 3, 3], bias [C, n_c]), PyTorch's Conv2d default
  U(+-1/sqrt(9 active)) for both, on the ``active`` input rows."""
  bound = 1.0 / np.sqrt(active * HEAD_KERNEL * HEAD_KERNEL)
  c, n_c = spec.classes_per_task, spec.channels
  w_key, b_key = jax.random.split(key)
  w = jax.random.uniform(
    w_key, (c, active, n_c, HEAD_KERNEL, HEAD_KERNEL), jnp.float32, -bound, bound
  )
  bias = jax.random.uniform(b_key, (c, n_c), jnp.float32, -bound, bound)
  return gen.pad(w, (c, width, n_c, HEAD_KERNEL, HEAD_KERNEL)), bias


def embeddings(params, value: float = 0.0) -> tuple[jax.Array, ...]:
  """A new task's embeddings, like "w": 0 for task 0, 6 / s_max later in the reference."""
  return tuple(jnp.full(w.shape, value, jnp.float32) for w in params["w"])


def init(key: jax.Array, spec: ResNetGeneratorSpec, multiple: int = 8):
  """Fresh (params, stats, sizes int [10, 2]) at the start, widths rounded up to ``multiple``.

  Heads are zero: a method draws each task's (``head_init``) at its start.
  """
  sizes = spec.start_sizes()
  active = size_widths(sizes)
  widths = tuple(gen.round_up(a, multiple) for a in active)
  w_key, bn_key = jax.random.split(key)
  ws = [
    gen.pad(_xavier(jax.random.fold_in(w_key, l), shape, l == FC), full)
    for l, (shape, full) in enumerate(zip(weight_shapes(spec, active), weight_shapes(spec, widths)))
  ]
  t = spec.num_tasks
  scale0 = bn_init(bn_key, active, widths)
  params = {
    "w": tuple(ws),
    "emb": tuple(jnp.zeros(w.shape) for w in ws),
    "scale": tuple(jnp.zeros((t, p)).at[0].set(s) for p, s in zip(widths, scale0)),
    "bias": tuple(jnp.zeros((t, p)) for p in widths),
    "head": jnp.zeros((spec.num_classes, widths[6], spec.channels, HEAD_KERNEL, HEAD_KERNEL)),
    "head_bias": jnp.zeros((spec.num_classes, spec.channels)),
  }
  stats = {
    "mean": tuple(jnp.zeros((t, p)) for p in widths),
    "var": tuple(jnp.ones((t, p)) for p in widths),
  }
  return params, stats, sizes


def grow(key: jax.Array, spec: ResNetGeneratorSpec, params, stats, old_sizes, new_sizes, widths):
  """The generator at group widths ``widths`` [7] after a growth old_sizes -> new_sizes.

  Each weight keeps its old allocated block; its new entries are drawn
  Xavier-uniform on the new allocated shape (module docstring), the padding
  is zero. Embeddings, BN rows, heads and statistics are padded (0; var 1):
  the caller sets the next task's embeddings (``embeddings``) and BN scales
  (``bn_init``). Returns (params, stats).
  """
  if any(w < p for w, p in zip(widths, widths_of(params))):
    raise ValueError(f"widths {tuple(widths)} narrower than {widths_of(params)}")
  full = weight_shapes(spec, widths)
  ws = []
  for l, (w, old, new, f) in enumerate(
    zip(params["w"], np.asarray(old_sizes), np.asarray(new_sizes), full)
  ):
    shape = (int(new[0]), int(new[1]), *f[2:])
    fresh = _xavier(jax.random.fold_in(key, l), shape, l == FC)
    keep = (jnp.arange(shape[0])[:, None] < old[0]) & (jnp.arange(shape[1])[None, :] < old[1])
    block = gen.pad(w, np.maximum(w.shape, shape))[: shape[0], : shape[1]]
    ws.append(gen.pad(jnp.where(keep[:, :, None, None], block, fresh), f))
  t = spec.num_tasks
  pad_rows = lambda xs, value=0.0: tuple(gen.pad(x, (t, p), value) for x, p in zip(xs, widths))
  params = {
    "w": tuple(ws),
    "emb": tuple(gen.pad(e, s) for e, s in zip(params["emb"], full)),
    "scale": pad_rows(params["scale"]),
    "bias": pad_rows(params["bias"]),
    "head": gen.pad(params["head"], (spec.num_classes, widths[6], *params["head"].shape[2:])),
    "head_bias": params["head_bias"],
  }
  stats = {"mean": pad_rows(stats["mean"]), "var": pad_rows(stats["var"], 1.0)}
  return params, stats
