"""DGM's classifier steps: t + 1 Adam steps of D's aux cross-entropy per batch
(docs/dgm.md#training-loop).

The real batch and the replay of the past (one batch's worth per past class,
or per past task with ten classes a task) are shuffled together and cut into
t + 1 chunks of the real batch's size, one Adam step each (``lax.scan``).
A function of a ``DGM`` method (``methods/dgm/dgm.py``) and its state.
"""

import jax
import jax.numpy as jnp
import optax

from dynamos_jax import losses


def ce_chunks(
  method, state, key, real, labels, valid, replay, t: int, replay_labels=None, replay_valid=None
):
  """The t + 1 CE steps on D over real + replay; ((d, d_stats, d_opt), mean CE, accuracy).

  Args:
    real: [B, 32, 32, C] the real batch in [-1, 1]; labels int32 [B]; valid bool [B].
    replay: None (t = 0) or [t, B, 32, 32, C] the past's images at the batch's positions.
    replay_labels, replay_valid: int32 / bool [t, B], the replay's labels and rows that
      exist (ten classes a task, ``imagenet.ResNetFamily.replay``); None: past class c's B rows
      are all labelled c and exist where the real rows do (one class a task).
  """
  b = real.shape[0]
  x = (
    real
    if replay is None
    else jnp.concatenate([real[None], replay]).reshape(((t + 1) * b, *real.shape[1:]))
  )
  if replay_labels is None:
    y = jnp.concatenate([labels] + [jnp.full((b,), c, jnp.int32) for c in range(t)])
    ok = jnp.tile(valid, t + 1)
  else:
    y = jnp.concatenate([labels, replay_labels.reshape(-1)])
    ok = jnp.concatenate([valid, replay_valid.reshape(-1)])
  n = jnp.sum(valid)
  # A random order with the real (unpadded) rows first; chunk i takes rows i n .. i n + n - 1.
  u = jax.random.uniform(key, ok.shape)
  order = jnp.argsort(jnp.where(ok, u, u + 2.0))
  r = jnp.arange(b)
  rows = order[jnp.minimum(jnp.arange(t + 1)[:, None] * n + r[None], (t + 1) * b - 1)]
  chunk_mask = jnp.broadcast_to(r[None] < n, rows.shape)
  if replay_valid is not None:
    # Fewer replay rows than t n (the tail of an epoch): the last chunk is shorter, and
    # an empty one takes no step (the code's chunk loop ends there).
    chunk_mask = chunk_mask & ok[rows]

  def ce_step(carry, chunk):
    d, d_stats, d_opt = carry
    idx, m = chunk

    def loss_fn(params):
      _, logits, stats = method._d_apply(params, d_stats, x[idx], True, m)
      logits = method._seen_logits(logits, t)
      return losses.cross_entropy(logits, y[idx], m), (logits, stats)

    (ce, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d)
    updates, new_opt = method.tx_d.update(grads, d_opt, d)
    new = (optax.apply_updates(d, updates), stats, new_opt)
    if replay_valid is not None:
      new = jax.tree.map(lambda a, o: jnp.where(jnp.any(m), a, o), new, carry)
    correct = jnp.sum((jnp.argmax(logits, -1) == y[idx]) & m)
    return new, (ce, correct)

  carry, (ce, correct) = jax.lax.scan(
    ce_step, (state.d, state.d_stats, state.d_opt), (rows, chunk_mask), unroll=method.unroll
  )
  seen = (t + 1) * n if replay_valid is None else jnp.sum(chunk_mask)
  return carry, jnp.mean(ce), jnp.sum(correct) / jnp.maximum(seen, 1)
