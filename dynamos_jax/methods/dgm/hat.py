"""HAT-style task masks of DGM's generator, as pure functions (docs/dgm.md#masks-and-their-scale).

Per masked layer l and task t a real embedding e_l^t (DGMw: one per weight,
DGMa: one per output channel) gives the soft mask m = sigmoid(s e) at the
scale s of an annealing schedule (docs/dgm.md#scale-schedule). After the task
the masks binarise at s_max and cumulate into M^{<=t}, and later tasks'
gradients on reserved weights are zeroed
(docs/dgm.md#cumulative-masks-and-gradient-conditioning); the embeddings'
gradients are rescaled (docs/dgm.md#embedding-gradient-compensation), a
sparsity regulariser counts the mask mass on free entries
(docs/dgm.md#sparsity-regulariser), and the network grows by what the task
reserved (docs/dgm.md#growth-after-each-task).

Arrays carry an *existence* mask ``exist`` (1 on the active entries of the
per-task common shape, 0 on its padding; docs/dgm.md#shapes-and-existence-masks):
padding never counts as free, reserved or masked. Everything here is jittable
except the growth rule, which runs on the host on Python ints.
"""

import jax
import jax.numpy as jnp

SCHEDULES = ("code", "paper")


def scale(
  schedule: str,
  epoch,
  position,
  epochs: int,
  batches,
  samples,
  batch_size: int,
  smax: float,
  local: bool,
) -> tuple[jax.Array, jax.Array]:
  """The mask scale s of one batch and its epoch's scale s^e (docs/dgm.md#scale-schedule).

  Args:
    schedule: "code" (the released code) or "paper" (eqs. 3-4).
    epoch: e, the 0-based epoch (int or traced int32 []).
    position: the 0-based batch position within the epoch.
    epochs: I, epochs per task.
    batches: batches per epoch (traced ok).
    samples: N_t, the task's training samples (traced ok).
    batch_size: B.
    smax: S.
    local: anneal within the epoch too (DGMw); DGMa uses s = s^e.

  Returns:
    (s, s_e), float32 [] each.

  code:  s^e = 1/S + (S - 1/S) e / I; s = 1/s^e + (s^e - 1/s^e) j / N_t with
         j = position * B the first sample of the batch. At e = 0, s^e = 1/S,
         so the batch ramp runs *down* from S to 1/S (the reference's quirk).
  paper: s^e = 1/S + (S - 1/S) e / (I - 1); s = 1/s^e + (s^e - 1/s^e) b / (nb - 1)
         (b, e 0-based here; a ratio with a zero denominator counts as 1, so a
         one-epoch or one-batch task ends at S).
  """
  e = jnp.asarray(epoch, jnp.float32)
  p = jnp.asarray(position, jnp.float32)
  inv = 1.0 / smax
  if schedule == "code":
    global_ratio = e / epochs
    local_ratio = p * batch_size / jnp.asarray(samples, jnp.float32)
  elif schedule == "paper":
    global_ratio = e / (epochs - 1) if epochs > 1 else jnp.float32(1.0)
    nb = jnp.asarray(batches, jnp.float32) - 1.0
    local_ratio = jnp.where(nb > 0, p / jnp.maximum(nb, 1.0), 1.0)
  else:
    raise ValueError(f"unknown schedule {schedule!r}")
  s_e = jnp.float32(inv) + jnp.float32(smax - inv) * global_ratio
  if not local:
    return s_e, s_e
  if schedule == "paper":
    # The ramp reaches its end (ratio 1) here, where 1/s^e + (s^e - 1/s^e) cancels to
    # exactly 0 in float32 at s^e = 1/S (1e4 - 9999.9999 == 0), and the compensation
    # divides by s: weighted as (1 - r) a + r b, both ends are exact.
    return (1.0 / s_e) * (1.0 - local_ratio) + s_e * local_ratio, s_e
  return 1.0 / s_e + (s_e - 1.0 / s_e) * local_ratio, s_e


def mask(embedding: jax.Array, s, exist: jax.Array) -> jax.Array:
  """The soft mask sigmoid(s e) on the active entries, 0 on padding (any shape)."""
  return jax.nn.sigmoid(s * embedding) * exist


def binarise(embedding: jax.Array, smax: float, exist: jax.Array) -> jax.Array:
  """b = 1[sigmoid(S e) >= 0.5] on the active entries (float32, the code's test in float32)."""
  return ((jax.nn.sigmoid(jnp.float32(smax) * embedding) >= 0.5) * exist).astype(jnp.float32)


def cumulate(cum: jax.Array, binary: jax.Array) -> jax.Array:
  """M^{<=t} = max(M^{<=t-1}, b^t): the reference keeps the cumulative mask binary."""
  return jnp.maximum(cum, binary)


def weight_conditioner_w(cum: jax.Array, exist: jax.Array) -> jax.Array:
  """DGMw: the factor (1 - M^{<t}) on each weight's gradient (padding: 0)."""
  return (1.0 - cum) * exist


def weight_conditioner_a(
  cum_out: jax.Array, cum_in: jax.Array | None, exist: jax.Array
) -> jax.Array:
  """DGMa: 1 - min(M_out[o], M_in[i]) on weight [C_in, C_out, k, k] (HAT's rule).

  Args:
    cum_out: [C_out] the layer's cumulative unit mask.
    cum_in: [C_in] the previous layer's, or None for the first layer (its
      inputs are the noise: only the output mask counts).
    exist: [C_in, C_out, 1, 1] or the weight's shape, the active entries.
  """
  out = cum_out[None, :, None, None]
  frozen = out if cum_in is None else jnp.minimum(out, cum_in[:, None, None, None])
  return (1.0 - frozen) * exist


def compensate(
  grad: jax.Array, embedding: jax.Array, s, s_epoch, thres_cosh: float = 50.0
) -> jax.Array:
  """The embedding gradient's rescaling (docs/dgm.md#embedding-gradient-compensation):

  g (s^e / s) (cosh(clip(s e, -thres, thres)) + 1) / (cosh(e) + 1).

  HAT's original uses S / s in place of s^e / s; pass ``s_epoch=smax`` for it.
  """
  num = jnp.cosh(jnp.clip(s * embedding, -thres_cosh, thres_cosh)) + 1.0
  den = jnp.cosh(embedding) + 1.0
  return grad * (s_epoch / s) * num / den


def regulariser(masks, cums, exists) -> jax.Array:
  """R^t = sum_l sum_i m_i (1 - M_i) / sum_l sum_i (1 - M_i) over the active entries.

  Args:
    masks, cums, exists: sequences over the masked layers of same-shape
      arrays: the current soft masks, the cumulative masks M^{<t} (zeros at
      t = 0, when R = the mean mask) and the existence masks.
  Returns: float32 []; 0 when no entry is free (the reference would divide by 0).
  """
  num = sum(jnp.sum(m * (1.0 - c) * x) for m, c, x in zip(masks, cums, exists))
  den = sum(jnp.sum((1.0 - c) * x) for c, x in zip(cums, exists))
  return jnp.where(den > 0, num / jnp.maximum(den, 1.0), 0.0)


def alpha(channels_now, channels_start) -> float:
  """lambda_RU's multiplier (docs/dgm.md#sparsity-regulariser): the conv1-3 channels now over
  those at the start."""
  return float(sum(channels_now)) / float(sum(channels_start))


def growth_a(delta) -> tuple[int, ...]:
  """DGMa: each layer gains as many output channels as the task reserved units
  (docs/dgm.md#growth-after-each-task)."""
  return tuple(int(d) for d in delta)


def growth_w(delta, inputs, outputs, kernel: int, credit: bool = True) -> tuple[int, ...]:
  """DGMw: the output channels a_l each layer gains after a task
  (docs/dgm.md#growth-after-each-task).

  Args:
    delta: [L] weights newly reserved by the task in each layer.
    inputs: [L] current input channels n_l (n_1 = the noise size).
    outputs: [L] current output channels p_l (p_l = n_{l+1}).
    kernel: k, the (square) kernel size.
    credit: the released code's rule: a_1 = ceil(d_1 / (n_1 k^2)); for l > 1
      a_l = max(0, ceil((d_l - a_{l-1} p_l k^2) / ((n_l + a_{l-1}) k^2))), the
      free weights created by the input growth credited first. False: the
      paper's a_l = ceil(d_l / (n_l k^2)) (its d/n, n being the weights per
      output unit), with n_l the input channels before this growth.
  Returns: (a_1, ..., a_L).
  """
  k2 = kernel * kernel
  grow, previous = [], 0
  for d, n, p in zip(delta, inputs, outputs):
    d, n, p = int(d), int(n), int(p)
    if credit:
      a = max(0, _ceil_div(d - previous * p * k2, (n + previous) * k2))
    else:
      a = max(0, _ceil_div(d, n * k2))
    grow.append(a)
    previous = a
  return tuple(grow)


def _ceil_div(a: int, b: int) -> int:
  """ceil(a / b) for ints, exactly (b > 0)."""
  return -(-a // b)
