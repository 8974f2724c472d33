"""DGM's masked DCGAN generator (DGMw and DGMa) at a per-task common shape.

See docs/dgm.md#dcgan-generator and docs/dgm.md#shapes-and-existence-masks.

  z [N, nz] (z[0:K] = one-hot(class)) -> conv1 ConvT(nz -> 4 ngf, 4, 1, 0)  4x4
    -> BN_t, ReLU -> conv2 ConvT(4 ngf -> 2 ngf, 4, 2, 1)                    8x8
    -> BN_t, ReLU -> conv3 ConvT(2 ngf -> ngf, 4, 2, 1)                       16x16
    -> BN_t, ReLU -> head_t ConvT(ngf -> n_c, 4, 2, 1), tanh                  32x32

No biases. conv1-3 carry the task's mask: DGMw multiplies each weight by its
mask, DGMa each output channel (before BN_t in the reference, after the ReLU
in HAT's placement). BN_t (affine, eps 1e-5, momentum 0.1, PyTorch's unbiased
running variance) and head_t are private to task t.

Written as pure functions over a params dict rather than a Linen module: the
arrays grow between tasks (``grow``), a traced task index picks a task's BN
and head, and the masks come from outside (``hat.py``), none of which Linen's
fixed-shape ``init`` helps with. Layout (P_l: the common widths, >= the
active ones; T tasks):

  params = {"w": (w1, w2, w3) [C_in, C_out, 4, 4] (PyTorch's ConvT layout),
            "emb": the current task's embeddings, DGMw: like "w", DGMa: ([P_l],)*3,
            "scale", "bias": ([T, P_l],)*3 (BN_t), "head": [T, P_3, n_c, 4, 4]}
  stats  = {"mean", "var": ([T, P_l],)*3} (BN_t's running statistics)

Task t' runs on channels [0, C_l^(t')) (its active counts, ``counts`` [3]):
existence masks zero every other entry in the forward pass, so the padding
and the channels added after t' never reach it. Random draws are made at the
active shapes and then padded, so a seed's numbers do not depend on how far
its arrays are padded. Initialisation as PyTorch 1.0 (docs/dgm.md#initialisation).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import conv

KERNEL = 4
EPS = 1e-5
MOMENTUM = 0.1
# Each layer's (stride, padding).
GEOMETRY = ((1, 0), (2, 1), (2, 1))
HEAD_GEOMETRY = (2, 1)


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
  """Static description: variant "w" | "a", ngf, nz, n_c, T, DGMa's mask placement, the
  transposed convolutions' implementation."""

  variant: str
  ngf: int
  nz: int
  channels: int
  num_tasks: int
  placement: str = "reference"
  # The convolutions' implementation, G's transposed ones (conv_transpose) and the
  # family's D's strided ones: dgm.conv resolved for the backend.
  conv: str = "auto"

  @property
  def start(self) -> tuple[int, int, int]:
    """The active output channels of conv1-3 at the start: (4 ngf, 2 ngf, ngf)."""
    return (4 * self.ngf, 2 * self.ngf, self.ngf)

  def inputs(self, counts) -> tuple[int, ...]:
    """Input channels of conv1-3 for output counts ``counts``: (nz, C_1, C_2)."""
    return (self.nz, int(counts[0]), int(counts[1]))


def round_up(x: int, multiple: int) -> int:
  return -(-int(x) // multiple) * multiple


def conv_transpose(
  x: jax.Array, w: jax.Array, stride: int, padding: int, implementation: str = "auto"
) -> jax.Array:
  """PyTorch's ConvTranspose2d (no bias): x [N, H, W, C_in], w [C_in, C_out, k, k].

  ``xla``: a convolution of the stride-dilated input with the spatially flipped kernel,
  padded by k - 1 - p. ``space_to_depth`` (``auto`` on CPU, for strides over 1): the
  adjoint of the strided convolution with ``w`` (``conv.conv_transpose_space_to_depth``),
  whose derivatives avoid XLA:CPU's slow path for dilated convolutions.
  """
  if stride > 1 and conv.resolve(implementation) == "space_to_depth":
    return conv.conv_transpose_space_to_depth(x, jnp.transpose(w, (2, 3, 1, 0)), stride, padding)
  k = w.shape[-1]
  kernel = jnp.transpose(w[:, :, ::-1, ::-1], (2, 3, 0, 1))  # HWIO
  pad = k - 1 - padding
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(1, 1),
    padding=((pad, pad), (pad, pad)),
    lhs_dilation=(stride, stride),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


def channel_exist(counts, widths) -> tuple[jax.Array, ...]:
  """[P_l] float 1 on the active output channels of each layer (counts: int [3], traced ok)."""
  return tuple((jnp.arange(p) < counts[l]).astype(jnp.float32) for l, p in enumerate(widths))


def weight_exist(counts, shapes) -> tuple[jax.Array, ...]:
  """[C_in, C_out, 1, 1] float 1 on the active entries of each conv weight."""
  out = []
  for l, shape in enumerate(shapes):
    rows = jnp.ones((shape[0],)) if l == 0 else (jnp.arange(shape[0]) < counts[l - 1])
    cols = jnp.arange(shape[1]) < counts[l]
    out.append((rows[:, None] * cols[None, :]).astype(jnp.float32)[:, :, None, None])
  return tuple(out)


def widths_of(params) -> tuple[int, int, int]:
  """The common widths P_l of conv1-3's outputs."""
  return tuple(int(w.shape[1]) for w in params["w"])


def batch_norm(h, scale, bias, mean, var, sample_mask, train):
  """Per-channel BN of h [N, H, W, P]; returns (out, batch mean, unbiased batch var)."""
  if not train:
    return (h - mean) / jnp.sqrt(var + EPS) * scale + bias, None, None
  weight = sample_mask.astype(h.dtype)[:, None, None, None]
  n = jnp.maximum(jnp.sum(weight) * h.shape[1] * h.shape[2], 1.0)
  mu = jnp.sum(h * weight, axis=(0, 1, 2)) / n
  v = jnp.sum(((h - mu) ** 2) * weight, axis=(0, 1, 2)) / n
  out = (h - mu) / jnp.sqrt(v + EPS) * scale + bias
  return out, mu, v * n / jnp.maximum(n - 1.0, 1.0)


def forward(
  spec: GeneratorSpec,
  params,
  stats,
  z: jax.Array,
  task,
  masks,
  counts,
  train: bool,
  sample_mask: jax.Array | None = None,
):
  """Images of task ``task`` from noise: (images f32 [N, 32, 32, n_c] in [-1, 1], stats).

  Args:
    params, stats: the generator's (module docstring).
    z: [N, nz] noise (its one-hot prefix already written).
    task: int32 [] whose BN and head run (traced ok).
    masks: the task's soft masks (``hat.mask``): DGMw weight-shaped, DGMa [P_l].
    counts: int32 [3] the task's active output channels.
    train: batch statistics, and BN_task's running statistics updated (the
      returned stats); else the running statistics (stats returned unchanged).
    sample_mask: bool [N], False rows (padding) stay out of the statistics.
  """
  if sample_mask is None:
    sample_mask = jnp.ones(z.shape[:1], bool)
  exist = channel_exist(counts, widths_of(params))
  wexist = weight_exist(counts, [w.shape for w in params["w"]])
  h = z[:, None, None, :]
  new = {"mean": list(stats["mean"]), "var": list(stats["var"])}
  for l, ((stride, pad), w) in enumerate(zip(GEOMETRY, params["w"])):
    if spec.variant == "w":
      w = w * masks[l] * wexist[l]
    else:
      w = w * wexist[l]
    y = conv_transpose(h, w, stride, pad, spec.conv)
    if spec.variant == "a" and spec.placement == "reference":
      y = y * masks[l]
    y, mu, var = batch_norm(
      y,
      params["scale"][l][task],
      params["bias"][l][task],
      stats["mean"][l][task],
      stats["var"][l][task],
      sample_mask,
      train,
    )
    if train:
      new["mean"][l] = (
        stats["mean"][l].at[task].set((1 - MOMENTUM) * stats["mean"][l][task] + MOMENTUM * mu)
      )
      new["var"][l] = (
        stats["var"][l].at[task].set((1 - MOMENTUM) * stats["var"][l][task] + MOMENTUM * var)
      )
    y = jax.nn.relu(y)
    if spec.variant == "a" and spec.placement == "hat":
      y = y * masks[l]
    h = y * exist[l]  # Absent channels would output ReLU(beta): zero them.
  head = params["head"][task] * exist[2][:, None, None, None]  # inputs: conv3's active channels
  out = jnp.tanh(conv_transpose(h, head, *HEAD_GEOMETRY, spec.conv))
  return out, {"mean": tuple(new["mean"]), "var": tuple(new["var"])}


def noise(key: jax.Array, n: int, nz: int, labels: jax.Array, onehot: int) -> jax.Array:
  """z [n, nz] ~ N(0, 1) with z[:, :onehot] = one-hot(labels) (onehot 0: plain noise)."""
  z = jax.random.normal(key, (n, nz))
  if onehot:
    z = z.at[:, :onehot].set(jax.nn.one_hot(labels, onehot))
  return z


# --- initialisation (docs/dgm.md#initialisation), drawn at the active shapes, then padded ---


def _xavier(key, shape, gain=np.sqrt(2.0)):
  """Xavier-uniform with PyTorch's fans of a ConvT weight [C_in, C_out, k, k]."""
  receptive = shape[2] * shape[3]
  fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
  bound = gain * np.sqrt(6.0 / (fan_in + fan_out))
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def pad(x: jax.Array, shape, value=0.0) -> jax.Array:
  """``x`` zero- (or ``value``-) padded at the end of each axis to ``shape``."""
  return jnp.pad(x, [(0, s - d) for s, d in zip(shape, x.shape)], constant_values=value)


def weight_shapes(spec: GeneratorSpec, widths) -> list[tuple[int, ...]]:
  """The conv1-3 weight shapes for output widths ``widths``."""
  inputs = (spec.nz, widths[0], widths[1])
  return [(i, o, KERNEL, KERNEL) for i, o in zip(inputs, widths)]


def head_init(key, spec: GeneratorSpec, active: int, width: int) -> jax.Array:
  """A new head [width, n_c, k, k]: PyTorch's default U(+-1/sqrt(n_c k^2)) on the active rows."""
  bound = 1.0 / np.sqrt(spec.channels * KERNEL * KERNEL)
  w = jax.random.uniform(key, (active, spec.channels, KERNEL, KERNEL), jnp.float32, -bound, bound)
  return pad(w, (width, spec.channels, KERNEL, KERNEL))


def bn_init(key, active, widths, first: bool) -> tuple[jax.Array, ...]:
  """BN scales per layer [P_l]: N(1, 0.02) for task 0 (the code's init), U(0, 1) later
  (PyTorch 1.0's default for a new BatchNorm)."""
  out = []
  for l, (a, p) in enumerate(zip(active, widths)):
    k = jax.random.fold_in(key, l)
    g = (1.0 + 0.02 * jax.random.normal(k, (a,))) if first else jax.random.uniform(k, (a,))
    out.append(pad(g, (p,)))
  return tuple(out)


def init(key: jax.Array, spec: GeneratorSpec, multiple: int = 8):
  """Fresh (params, stats, counts int [3]) at the start widths rounded up to ``multiple``."""
  active = spec.start
  widths = tuple(round_up(a, multiple) for a in active)
  w_key, bn_key = jax.random.split(key)
  ws = []
  for l, (shape, full) in enumerate(zip(weight_shapes(spec, active), weight_shapes(spec, widths))):
    k = jax.random.fold_in(w_key, l)
    w = _xavier(k, shape) if spec.variant == "w" else 0.02 * jax.random.normal(k, shape)
    ws.append(pad(w, full))
  t = spec.num_tasks
  scale0 = bn_init(bn_key, active, widths, first=True)
  params = {
    "w": tuple(ws),
    "emb": _zero_embeddings(spec, widths),
    "scale": tuple(jnp.zeros((t, p)).at[0].set(s) for p, s in zip(widths, scale0)),
    "bias": tuple(jnp.zeros((t, p)) for p in widths),
    "head": jnp.zeros((t, widths[2], spec.channels, KERNEL, KERNEL)),
  }
  stats = {
    "mean": tuple(jnp.zeros((t, p)) for p in widths),
    "var": tuple(jnp.ones((t, p)) for p in widths),
  }
  return params, stats, np.asarray(active, np.int32)


def _zero_embeddings(spec, widths):
  if spec.variant == "w":
    return tuple(jnp.zeros(s) for s in weight_shapes(spec, widths))
  return tuple(jnp.zeros((p,)) for p in widths)


def masked_count(spec: GeneratorSpec, counts) -> int:
  """The active conv1-3 weights (the code's "network size")."""
  return sum(i * int(o) * KERNEL * KERNEL for i, o in zip(spec.inputs(counts), counts))


def private_count(spec: GeneratorSpec, counts) -> tuple[int, int]:
  """(head, BN) parameters of one task at active counts ``counts``."""
  return int(counts[2]) * spec.channels * KERNEL * KERNEL, 2 * int(sum(counts))


def grow(key: jax.Array, spec: GeneratorSpec, params, stats, old_counts, new_counts, widths):
  """The generator at common widths ``widths`` after a growth old_counts -> new_counts.

  New weight entries (in the new active block, outside the old one) are drawn
  as docs/dgm.md#initialisation says: DGMw N(0, 0.02); DGMa Xavier-uniform (gain sqrt 2) on the new
  full active shape, the old block kept. Embeddings, BN rows, heads and
  statistics are padded (0; var 1). Returns (params, stats).
  """
  old_shapes = weight_shapes(spec, old_counts)
  new_shapes = weight_shapes(spec, new_counts)
  full = weight_shapes(spec, widths)
  ws = []
  for l, (w, old, new, f) in enumerate(zip(params["w"], old_shapes, new_shapes, full)):
    k = jax.random.fold_in(key, l)
    if spec.variant == "w":
      # Traced in one program (shapes.pad), XLA would fold 0.02 into the draw's own last
      # multiply; the barrier keeps the draws bit for bit those of the op-by-op growth.
      fresh = 0.02 * jax.lax.optimization_barrier(jax.random.normal(k, new))
    else:
      fresh = _xavier(k, new)
    rows = jnp.arange(new[0])[:, None] < old[0]
    cols = jnp.arange(new[1])[None, :] < old[1]
    keep = (rows & cols)[:, :, None, None]
    # The old weights on the new active block (zeros outside the old active one).
    block = pad(w, np.maximum(w.shape, new))[: new[0], : new[1]]
    ws.append(pad(jnp.where(keep, block, fresh), f))
  t = spec.num_tasks
  pad_rows = lambda xs, value=0.0: tuple(pad(x, (t, p), value) for x, p in zip(xs, widths))
  params = {
    "w": tuple(ws),
    "emb": tuple(pad(e, s.shape) for e, s in zip(params["emb"], _zero_embeddings(spec, widths))),
    "scale": pad_rows(params["scale"]),
    "bias": pad_rows(params["bias"]),
    "head": pad(params["head"], (t, widths[2], spec.channels, KERNEL, KERNEL)),
  }
  stats = {"mean": pad_rows(stats["mean"]), "var": pad_rows(stats["var"], 1.0)}
  return params, stats
