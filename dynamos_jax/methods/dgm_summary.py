"""What a user of DGM reads off a state (dgm-spec 16): samples, task masks, mask statistics, size.

Functions of a ``DGM`` method (``methods/dgm.py``) and its state, on the
host; ``dgm_plots`` draws them. Each finished task t keeps its embeddings
(``state.past_emb[l][t]``) and its active counts (``state.counts[t]``), so
everything here is recomputed from the state, for any number of finished
tasks.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax import hat
from dynamos_jax.models import dgm_generator as gen

# fold_in constant of the after-task samples' noise, off the method's own key (state.key;
# the other named keys, 1-5, are dgm.py's, dgm_shapes' and dgm_replay's): no task folded
# in, so the same noise after every task.
SAMPLES_KEY = 16
SAMPLES_PER_CLASS = 8


def generate(method, state, z: jax.Array, task: int, finished: bool = True,
             binary: bool = False) -> jax.Array:
  """Images [N, 32, 32, C] in [-1, 1] of class ``task`` from noise z [N, nz] (its one-hot
  prefix written): eval-mode BN, s = S, the class's own sub-network and masks (its kept
  embedding once ``finished``, else the embedding being trained); ``binary``: the masks
  binarised (1[sigmoid(S e) >= 0.5]) instead of the soft sigmoid(S e) of spec 12.5."""
  counts = state.counts[task]
  exists = method._exists(state.g, counts)
  emb = tuple(e[task] for e in state.past_emb) if finished else state.g["emb"]
  if binary:
    masks = tuple(hat.binarise(e, method.smax, x) for e, x in zip(emb, exists))
  else:
    masks = method._masks(emb, method.smax, exists)
  return gen.forward(method.spec, state.g, state.g_stats, z, task, masks, counts, False)[0]


def sample_noise(method, state, n: int = SAMPLES_PER_CLASS) -> jax.Array:
  """float32 [n, nz] the samples' noise: from the seed (``state.key``) and ``SAMPLES_KEY``
  only, so the same after every task; its one-hot prefix is each class's (``samples``)."""
  key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(state.key)), SAMPLES_KEY)
  return jax.random.normal(key, (n, method.spec.nz))


def samples(method, state, classes: int, n: int = SAMPLES_PER_CLASS) -> np.ndarray:
  """uint8 [classes, n, 32, 32, C] images of classes 0..classes-1 (``generate``: s = S, eval
  BN, each class's own masks and sub-network) from the same noise in every row (column j:
  ``sample_noise``'s row j, its one-hot prefix set to the class); pixels round(127.5 (x + 1))."""
  state = jax.tree.map(jnp.asarray, state)
  base = sample_noise(method, state, n)
  rows = []
  for c in range(classes):
    z = base
    if method.onehot:
      z = z.at[:, :method.num_classes].set(jax.nn.one_hot(jnp.full((n,), c), method.num_classes))
    images = np.asarray(generate(method, state, z, c), np.float32)
    rows.append(np.clip(np.round(127.5 * (images + 1.0)), 0, 255).astype(np.uint8))
  return np.stack(rows)


def task_masks(method, state, tasks: int) -> list[tuple[np.ndarray, ...]]:
  """The binary masks b^t (host, per layer) of the first ``tasks`` finished tasks, each
  on its own sub-network: 1[sigmoid(S e^t) >= 0.5]."""
  g = jax.tree.map(jnp.asarray, state.g)
  out = []
  for t in range(tasks):
    exists = method._exists(g, state.counts[t])
    out.append(tuple(np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, x))
                     for e, x in zip(state.past_emb, exists)))
  return out


def mask_statistics(method, state, tasks: int) -> list[dict]:
  """Per finished task and layer: entries (weights or units) of its sub-network, the ones
  its mask reserves, of them those new (free before it) and those reused (reserved by
  an earlier task), the free entries left after it (Fig. 3a's shares, spec 16)."""
  rows, cum = [], None
  g = jax.tree.map(jnp.asarray, state.g)
  for t, masks in enumerate(task_masks(method, state, tasks)):
    counts = np.asarray(state.counts[t])
    if cum is None:
      cum = tuple(np.zeros_like(m) for m in masks)
    exists = method._exists(g, counts)
    new_cum = tuple(np.maximum(c, m) for c, m in zip(cum, masks))
    for l, (m, c, nc, x) in enumerate(zip(masks, cum, new_cum, exists)):
      size = int(np.sum(np.broadcast_to(np.asarray(x), m.shape)))
      rows.append({"task": t, "layer": l + 1, "entries": size, "reserved": int(m.sum()),
                   "new": int((m * (1 - c)).sum()), "reused": int((m * c).sum()),
                   "free_after": size - int(nc.sum()), "channels": int(counts[l])})
    cum = new_cum
  return rows


def generator_size(method, state, tasks: int) -> dict:
  """G after ``tasks`` finished tasks (Table 3 and 4's quantities).

  masked_params: conv1-3 weights of the network the last of them trained on;
  masked_params_grown: after the growth that followed it. Bytes (float32):
  the grown conv1-3 weights plus each task's BN and head; the masks as the
  bits of each task's binary mask over its sub-network, or as a sparse list
  of int32 indices of its ones.
  """
  spec = method.spec
  trained = gen.masked_count(spec, np.asarray(state.counts[tasks - 1]))
  grown = gen.masked_count(spec, np.asarray(state.counts[tasks]))
  private = sum(sum(gen.private_count(spec, np.asarray(state.counts[t])))
                for t in range(tasks))
  g = jax.tree.map(jnp.asarray, state.g)
  bits = ones = 0
  for t, masks in enumerate(task_masks(method, state, tasks)):
    for m, x in zip(masks, method._exists(g, state.counts[t])):
      bits += int(np.sum(np.broadcast_to(np.asarray(x), m.shape)))
      ones += int(m.sum())
  return {"masked_params": trained, "masked_params_grown": grown,
          "weights_bytes": 4 * (grown + private), "masks_bitmap_bytes": -(-bits // 8),
          "masks_sparse_bytes": 4 * ones}
