"""The paper's analyses of a trained gated network (Figs. 3-7).

Pure functions on numbers; the figures are drawn by :mod:`dynamos_jax.methods.dynamos.plots`.
What each analysis computes and the choices the paper leaves open:
docs/dynamos.md#analyses-of-a-trained-network.

* :func:`collect`: eval-mode logits, actions and attention vectors of a test set.
* :func:`activation_rates`: class-wise or task-wise filter activation rates (Figs. 3, 7).
* :func:`jensen_shannon`, :func:`jsd_summary`: JSD between classes' rate vectors (Fig. 4).
* :func:`tsne`: 2-D embedding of the last agent's attention vectors (Fig. 5).
* :func:`trial_variability`: repeated sampled-gate forwards of the same images (Fig. 6).
* :func:`keep_ratios`: per-agent keep ratio per class.

Column layout of ``actions`` and ``attention`` (docs/dynamos.md#the-network): agents 1..L side by
side, agent ``l`` in columns ``[W (l - 1), W l)`` with ``W = D / L`` (D = 256,
L = 4, W = 64 for the paper's network). The "last gated layer" is the last
``W`` columns; nothing here hard-codes 256 or 192.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def last_layer(x: np.ndarray, num_agents: int) -> np.ndarray:
  """The columns of the last agent: [..., D] -> [..., D / num_agents].

  With D = 256 and 4 agents these are columns 192-255 (the paper's final gated layer).
  """
  width = x.shape[-1]
  if width % num_agents:
    raise ValueError(f"{width} columns do not split into {num_agents} agents")
  return x[..., width - width // num_agents :]


def _forward_impl(model, mode: str, variables, images: jax.Array, key):
  rngs = {"gates": key} if mode == "sample" else None
  logits, aux = model.apply(variables, images, mode, False, rngs=rngs)
  if aux is None:
    raise ValueError("the model returned no gate outputs: it is not gated")
  return logits, aux["actions"], aux["attention"]


# Module and mode are static (Linen modules hash by their fields), so repeated
# calls with the same network, mode and batch shape reuse one compilation.
_forward = jax.jit(_forward_impl, static_argnums=(0, 1))


def collect(
  model, variables, images, mode: str, batch_size: int, key: jax.Array | None = None
) -> dict[str, np.ndarray]:
  """Eval-mode forward (BN running statistics) of ``images`` in fixed-size batches.

  Every batch has ``batch_size`` rows (the last is zero-padded and the padding
  dropped), so the forward compiles once; with running statistics in BN the
  padding does not affect the other rows.

  Args:
    model: a gated ``ResNet``.
    variables: its ``{"params": ..., "batch_stats": ...}``.
    images: [N, H, W, 3] uint8 or float in [0, 1]; best already on the device.
    mode: ``"threshold"`` (actions = 1[v >= 0]) or ``"sample"`` (Bernoulli actions).
    batch_size: rows per forward.
    key: PRNG key, required for ``"sample"``; batch ``i`` uses ``fold_in(key, i)``.
      Ignored for ``"threshold"``.

  Returns:
    ``{"logits": [N, K] float32, "actions": [N, D] float32 in {0, 1},
    "attention": [N, D] float32}`` as numpy arrays (D = 256 for the paper's network;
    attention is the pre-temperature vector v of every agent).
  """
  if mode not in ("threshold", "sample"):
    raise ValueError(f"mode must be 'threshold' or 'sample', not {mode!r}")
  if mode == "sample" and key is None:
    raise ValueError("mode 'sample' needs a PRNG key")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, not {batch_size}")
  images = jnp.asarray(images)
  n = images.shape[0]
  if n == 0:
    raise ValueError("no images to collect")
  outputs = []
  for index, start in enumerate(range(0, n, batch_size)):
    chunk = images[start : start + batch_size]
    pad = batch_size - chunk.shape[0]
    if pad:
      chunk = jnp.concatenate([chunk, jnp.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    batch_key = jax.random.fold_in(key, index) if mode == "sample" else None
    out = _forward(model, mode, variables, chunk, batch_key)
    outputs.append(tuple(x[: batch_size - pad] for x in out))
  outputs = jax.device_get(outputs)
  logits, actions, attention = (np.concatenate([o[i] for o in outputs]) for i in range(3))
  return {"logits": logits, "actions": actions, "attention": attention}


def activation_rates(actions: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
  """Fraction of each group's samples that keep each filter.

  ``rates[g, i] = mean over samples n with groups[n] == g of actions[n, i]``.
  Class-wise rates: ``groups = labels``; task-wise (two classes per task):
  ``groups = labels // 2``.

  Args:
    actions: [N, F] in {0, 1}.
    groups: [N] ints in ``[0, num_groups)``.
    num_groups: G.

  Returns:
    [G, F] float64; rows of groups without samples are NaN.
  """
  actions = np.asarray(actions, np.float64)
  groups = np.asarray(groups)
  if actions.ndim != 2 or groups.shape != actions.shape[:1]:
    raise ValueError(f"need actions [N, F] and groups [N]; got {actions.shape} and {groups.shape}")
  if groups.size and (groups.min() < 0 or groups.max() >= num_groups):
    raise ValueError(f"groups must lie in [0, {num_groups})")
  onehot = groups[None, :] == np.arange(num_groups)[:, None]  # [G, N]
  counts = onehot.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (onehot @ actions) / counts[:, None]


def keep_ratios(
  actions: np.ndarray, groups: np.ndarray, num_groups: int, num_agents: int
) -> np.ndarray:
  """Mean fraction of its channels each agent keeps, per group.

  Args:
    actions: [N, D] in {0, 1}, agents side by side (D / num_agents columns each).
    groups: [N] ints in ``[0, num_groups)`` (e.g. labels).
    num_groups: G.
    num_agents: L.

  Returns:
    [G, L] float64; rows of groups without samples are NaN.
  """
  rates = activation_rates(actions, groups, num_groups)
  if rates.shape[1] % num_agents:
    raise ValueError(f"{rates.shape[1]} columns do not split into {num_agents} agents")
  return rates.reshape(num_groups, num_agents, -1).mean(-1)


def jensen_shannon(rates: np.ndarray, base: float = 2.0) -> np.ndarray:
  """Pairwise Jensen-Shannon divergence between rows of activation rates.

  Each row is first normalised to a distribution over the F filters,
  ``P_c = rates[c] / sum(rates[c])``; then
  ``JSD(P, Q) = 0.5 KL(P || M) + 0.5 KL(Q || M)`` with ``M = (P + Q) / 2``,
  ``KL(P || M) = sum_i P_i log_base(P_i / M_i)`` and ``0 log 0 = 0``. With the
  default base 2 the result lies in [0, 1] (1 for disjoint supports); base e
  gives nats (at most ln 2). The paper (Fig. 4) reports these values x100
  without naming the base; the scaling is left to the caller (see :func:`jsd_summary`).

  Args:
    rates: [C, F] non-negative, finite.
    base: logarithm base.

  Returns:
    [C, C] float64, symmetric with a zero diagonal.

  Raises:
    ValueError: if a row is all zero (no filter ever active: the row is no
      distribution and JSD is undefined; it is not silently replaced by a
      uniform one), or if ``rates`` has negative or non-finite entries (e.g. NaN
      rows of classes without samples).
  """
  rates = np.asarray(rates, np.float64)
  if rates.ndim != 2:
    raise ValueError(f"rates must be [C, F], got shape {rates.shape}")
  if not np.all(np.isfinite(rates)) or np.any(rates < 0):
    raise ValueError("rates must be finite and non-negative")
  totals = rates.sum(1)
  if np.any(totals == 0):
    raise ValueError(
      f"rows {np.flatnonzero(totals == 0).tolist()} are all zero: JSD is undefined for them"
    )
  p = rates / totals[:, None]
  a, b = p[:, None, :], p[None, :, :]  # [C, 1, F], [1, C, F]
  m = (a + b) / 2

  def kl(x):  # sum x log(x / m), 0 where x = 0 (m > 0 wherever x > 0).
    with np.errstate(divide="ignore", invalid="ignore"):
      terms = np.where(x > 0, x * np.log(x / m), 0.0)
    return terms.sum(-1)

  jsd = (0.5 * kl(a) + 0.5 * kl(b)) / np.log(base)
  jsd = np.maximum((jsd + jsd.T) / 2, 0.0)  # Exact symmetry; no -1e-17 from rounding.
  np.fill_diagonal(jsd, 0.0)
  return jsd


def jsd_summary(jsd: np.ndarray, scale: float = 100.0) -> dict[str, Any]:
  """Lowest, highest and mean JSD over unordered pairs ``i < j`` (Fig. 4's numbers).

  Args:
    jsd: [C, C] from :func:`jensen_shannon` (unscaled), C >= 2.
    scale: factor applied to the reported values ``lowest``, ``highest`` and
      ``mean``; 100 is the paper's convention. Ratios do not depend on it.

  Returns:
    ``lowest_pair`` / ``highest_pair`` (i, j) with i < j (ties: first in
    row-major order), ``lowest``, ``highest``, ``mean`` (times ``scale``),
    ``lowest_over_mean``, ``lowest_over_highest`` and their inverses
    ``mean_over_lowest``, ``highest_over_lowest`` (the paper: lowest ~ 1/15 of
    the mean, ~ 1/42 of the highest; inf when the lowest is 0), and ``scale``.
  """
  jsd = np.asarray(jsd, np.float64)
  c = jsd.shape[0]
  if jsd.shape != (c, c) or c < 2:
    raise ValueError(f"jsd must be [C, C] with C >= 2, got shape {jsd.shape}")
  rows, cols = np.triu_indices(c, 1)
  values = jsd[rows, cols]
  lo, hi = int(np.argmin(values)), int(np.argmax(values))
  lowest, highest, mean = values[lo], values[hi], values.mean()

  def ratio(x, y):
    return float(x / y) if y != 0 else (float("nan") if x == 0 else float("inf"))

  return {
    "lowest_pair": (int(rows[lo]), int(cols[lo])),
    "lowest": float(scale * lowest),
    "highest_pair": (int(rows[hi]), int(cols[hi])),
    "highest": float(scale * highest),
    "mean": float(scale * mean),
    "lowest_over_mean": ratio(lowest, mean),
    "lowest_over_highest": ratio(lowest, highest),
    "mean_over_lowest": ratio(mean, lowest),
    "highest_over_lowest": ratio(highest, lowest),
    "scale": scale,
  }


def trial_variability(
  model,
  variables,
  images,
  labels,
  trials: int,
  key: jax.Array,
  num_agents: int,
  batch_size: int = 256,
  min_kept: int = 2,
) -> dict[str, Any]:
  """Last-layer actions of the same images over repeated sampled-gate forwards (Fig. 6).

  Each trial is an eval-mode forward in ``"sample"`` mode with its own key
  (``jax.random.split(key, trials)``). Per image, only trials with a correct
  prediction are kept; over the kept trials a last-layer filter is *always on*
  (kept in every one), *always off* (dropped in every one) or *variable*.

  Args:
    model, variables, images, batch_size: as in :func:`collect`.
    labels: [N] ints.
    trials: T >= 1 forwards per image (the paper uses 4).
    key: PRNG key.
    num_agents: L; the last layer is the last ``D / L`` columns of the actions.
    min_kept: images with fewer kept trials are left out of the aggregates
      (with one trial nothing can vary).

  Returns:
    * ``actions`` [T, N, W] float32 in {0, 1}: last-layer actions of every trial.
    * ``correct`` [T, N] bool, ``predictions`` [T, N] int: per trial.
    * ``num_kept`` [N] int: correct trials per image.
    * ``always_on``, ``always_off``, ``variable`` [N] float64: fractions of the
      W filters over the kept trials of each image (they sum to 1); NaN where
      no trial is kept.
    * ``mean_always_on``, ``mean_always_off``, ``mean_variable`` float: means of
      the per-image fractions over images with ``num_kept >= min_kept`` (NaN if none),
      and ``num_aggregated``, the number of those images.
  """
  if trials < 1:
    raise ValueError(f"trials must be positive, not {trials}")
  labels = np.asarray(labels)
  if labels.shape != (np.shape(images)[0],):
    raise ValueError(f"need one label per image; got {labels.shape} for {np.shape(images)[0]}")
  keys = jax.random.split(key, trials)
  acts, preds = [], []
  for t in range(trials):
    out = collect(model, variables, images, "sample", batch_size, keys[t])
    acts.append(last_layer(out["actions"], num_agents))
    preds.append(np.argmax(out["logits"], -1))
  actions = np.stack(acts)  # [T, N, W]
  predictions = np.stack(preds)  # [T, N]
  correct = predictions == labels[None, :]
  num_kept = correct.sum(0)
  kept = correct[:, :, None]
  on = np.all(np.where(kept, actions == 1, True), axis=0)  # [N, W]
  off = np.all(np.where(kept, actions == 0, True), axis=0)
  has = num_kept > 0
  always_on = np.where(has, on.mean(-1), np.nan)
  always_off = np.where(has, off.mean(-1), np.nan)
  variable = 1.0 - always_on - always_off  # NaN where nothing is kept.
  chosen = num_kept >= max(min_kept, 1)

  def mean(x):
    return float(x[chosen].mean()) if chosen.any() else float("nan")

  return {
    "actions": actions,
    "correct": correct,
    "predictions": predictions,
    "num_kept": num_kept,
    "always_on": always_on,
    "always_off": always_off,
    "variable": variable,
    "mean_always_on": mean(always_on),
    "mean_always_off": mean(always_off),
    "mean_variable": mean(variable),
    "num_aggregated": int(chosen.sum()),
  }


def kept_trials(variability: dict[str, Any], index: int) -> np.ndarray:
  """Last-layer actions [T', W] of image ``index`` in its correct trials only (Fig. 6 rows)."""
  return variability["actions"][variability["correct"][:, index], index]


def tsne(
  attention_last: np.ndarray, seed: int, max_iter: int = 1000, num_threads: int | None = None
) -> np.ndarray:
  """2-D t-SNE embedding of attention vectors (Fig. 5).

  scikit-learn's Barnes-Hut t-SNE, PCA initialisation, ``learning_rate="auto"``,
  perplexity ``min(30, N - 1)``, ``random_state=seed``: the same input and seed
  give the same embedding (also with a different number of threads).

  Args:
    attention_last: [N, W] (the last agent's v, W = 64), N >= 2.
    seed: random state.
    max_iter: optimisation iterations, the 250 early-exaggeration ones included
      (scikit-learn's minimum is 250).
    num_threads: if given, caps scikit-learn's OpenMP and BLAS threads during the
      fit. On a machine whose cores are busy (or after JAX has run in the same
      process) OpenMP's default thread count can make the fit many times slower;
      1 avoids that.

  Returns:
    [N, 2] float64.
  """
  from sklearn.manifold import TSNE  # Imported here: slow import, only needed for Fig. 5.
  from threadpoolctl import threadpool_limits  # A scikit-learn dependency.

  x = np.asarray(attention_last, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"need [N, W] with N >= 2, got shape {x.shape}")
  model = TSNE(
    n_components=2,
    perplexity=float(min(30, x.shape[0] - 1)),
    init="pca",
    learning_rate="auto",
    max_iter=max_iter,
    random_state=seed,
  )
  # Limits apply to libraries loaded at entry, hence after the import of TSNE.
  with threadpool_limits(limits=num_threads):
    return model.fit_transform(x)
