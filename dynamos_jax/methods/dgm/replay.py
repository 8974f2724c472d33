"""DGM's replay of past classes (docs/dgm.md#replay): generated in the step, never stored.

The reference generates, at each task's start, a fixed set of images of
every past class (as many as the task's real images) and pairs them with the
real batches by index. Here past class c's image at position q of the task's
fixed order is generated inside the step from the task-start snapshot of G
(``DGMState.snapshot``; eval-mode BN, s = S, task c's masks, BN and head)
with noise keyed by (task, c, q): the same fixed set per task, which a
resumed run regenerates exactly, at the cost of a G forward per replayed
image (G is ~3 % of D's cost). The reference permutes each generated set
once; with i.i.d. noise per index that permutation changes no distribution.
``dgm.replay=fresh`` draws new noise at every step instead.
"""

import jax
import jax.numpy as jnp

from dynamos_jax.methods.dgm import generator_dcgan as gen

REPLAY = 5  # fold_in constant of the replay's named key (methods/dgm/dgm.py holds the others)


def replay(method, state, positions: jax.Array, t: int) -> jax.Array:
  """Past classes' images at sample positions [B] of the task's order: [t, B, 32, 32, C].

  G as it was at the task start (the snapshot's weights; past tasks' BN,
  heads and statistics do not change within a task), eval-mode BN, s = S,
  each class's own masks and sub-network; noise keyed by (task, class,
  position), plus the step with ``replay=fresh``. Traced inside the step.
  """
  key = method._key(state, REPLAY, t)
  if method.replay == "fresh":
    key = jax.random.fold_in(key, state.step_in_task)
  g = dict(state.g, w=state.snapshot)
  nz, k = method.spec.nz, method.num_classes

  def one(_, c):
    kc = jax.random.fold_in(key, c)
    z = jax.vmap(lambda q: jax.random.normal(jax.random.fold_in(kc, q), (nz,)))(positions)
    if method.onehot:
      z = z.at[:, :k].set(jax.nn.one_hot(jnp.full(z.shape[:1], c), k))
    counts = state.counts[c]
    exists = method.family.exists(g, state, c)
    masks = method._masks(tuple(e[c] for e in state.past_emb), method.smax, exists)
    images, _ = gen.forward(method.spec, g, state.g_stats, z, c, masks, counts, train=False)
    return None, images

  return jax.lax.scan(one, None, jnp.arange(t), unroll=method.unroll)[1]
