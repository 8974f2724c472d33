"""DGM's shapes between tasks: the growth rule, a state padded to wider widths.

See docs/dgm.md#growth-after-each-task and docs/dgm.md#shapes-and-existence-masks.

G's arrays live at per-task common shapes (multiples of ``dgm.shape_multiple``)
with existence masks over the active entries: a growth after a task widens
them, and a multi-seed run pads every seed's state to the widest seed's, so
that the seeds share one program. Padding adds only absent entries (zeros
outside each task's active counts), so it changes no output, gradient or
count. Functions of a ``DGM`` method (``methods/dgm/dgm.py``) and its state.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import hat

# fold_in constants of the method's named keys used here (methods/dgm/dgm.py holds the others).
GROW, BN = 4, 3


def grown(method, g, counts: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, tuple]:
  """The growth after a task (docs/dgm.md#growth-after-each-task): (new active counts [L],
  the common widths [L]).

  counts: the finished task's active output channels; delta: the entries
  (weights or channels) its masks newly reserved, per layer. The widths are
  the new counts rounded up to ``shape_multiple``, never narrower than G's.
  """
  if method.expansion == "none":
    add = (0,) * len(counts)
  elif method.spec.variant == "a":
    add = hat.growth_a(delta)
  else:
    add = hat.growth_w(
      delta, method.spec.inputs(counts), counts, gen.KERNEL, credit=method.expansion == "code"
    )
  new = counts + np.asarray(add, np.int32)
  widths = tuple(
    max(gen.round_up(c, method.shape_multiple), w) for c, w in zip(new, gen.widths_of(g))
  )
  return new, widths


def pad_to(x: jax.Array, shape) -> jax.Array:
  """x zero-padded at the end of each axis to ``shape`` (each >= x's)."""
  return jnp.pad(x, [(0, a - b) for a, b in zip(shape, x.shape)])


def close_masks(method, state, t: int):
  """Task t's end for either G family (docs/dgm.md#cumulative-masks-and-gradient-conditioning):
  its masks binarised at s_max over
  the entries they covered (``family.exists``) and cumulated, its embeddings kept.
  Returns (state with ``cum`` and ``past_emb`` updated, int [L] the reserved entries
  per layer now)."""
  state, ones = _closed(state, method=method, t=t)
  return state, np.asarray(ones).astype(int)


# The lifecycle's programs are compiled whole, once per task: run op by op, every op
# compiled again at the shapes of each task (G's widths grow) and the time between tasks
# was mostly compilation.
@functools.partial(jax.jit, static_argnames=("method", "t"))
def _closed(state, *, method, t: int):
  g = state.g
  exists = method.family.exists(g, state, t)
  binary = tuple(hat.binarise(e, method.smax, x) for e, x in zip(g["emb"], exists))
  cum = tuple(hat.cumulate(c, b) for c, b in zip(state.cum, binary))
  past_emb = tuple(p.at[t].set(e) for p, e in zip(state.past_emb, g["emb"]))
  ones = jnp.stack([jnp.sum(c).astype(jnp.int32) for c in cum])
  return state.replace(cum=cum, past_emb=past_emb), ones


def pad(method, state, widths, grown=None):
  """``state`` at common widths ``widths`` [L] (each >= its own).

  ``grown=(t, old, new)``: task t's end also grows the active counts old ->
  new [L] (new entries drawn from the key of (GROW, t)), resets the current
  embeddings for task t + 1 and draws its BN scales. Without it the state
  is only padded (no key used): every active entry kept as it is.
  """
  widths = tuple(int(w) for w in widths)
  if grown is None:
    if widths == gen.widths_of(state.g):
      return state
    t, old = None, np.asarray(state.counts[-1])
    new = old
  else:
    t, old, new = grown
  as_tuple = lambda counts: tuple(int(c) for c in counts)
  return _padded(state, method=method, widths=widths, t=t, old=as_tuple(old), new=as_tuple(new))


@functools.partial(jax.jit, static_argnames=("method", "widths", "t", "old", "new"))
def _padded(state, *, method, widths, t, old, new):
  g = state.g
  key = method._key(state, GROW, method.spec.num_tasks if t is None else t)
  old, new = np.asarray(old), np.asarray(new)
  params, stats = gen.grow(key, method.spec, g, state.g_stats, old, new, widths)
  counts = state.counts
  if t is not None:
    params["emb"] = tuple(jnp.zeros_like(e) for e in params["emb"])
    counts = counts.at[t + 1 :].set(jnp.asarray(new, jnp.int32))
    if t + 1 < method.spec.num_tasks:
      scale = gen.bn_init(method._key(state, BN, t + 1), new, widths, first=False)
      params["scale"] = tuple(x.at[t + 1].set(v) for x, v in zip(params["scale"], scale))
  shapes = [e.shape for e in params["emb"]]
  return state.replace(
    g=params,
    g_stats=stats,
    g_opt=method.tx_g.init(params),
    past_emb=tuple(pad_to(p, (p.shape[0], *sh)) for p, sh in zip(state.past_emb, shapes)),
    cum=tuple(pad_to(c, sh) for c, sh in zip(state.cum, shapes)),
    counts=counts,
    snapshot=tuple(pad_to(w, nw.shape) for w, nw in zip(state.snapshot, params["w"])),
  )


def common_shape(method, states: list) -> list:
  """Several seeds' states (each grown by its own masks) padded to their widest widths."""
  widths = tuple(int(w) for w in np.max([gen.widths_of(s.g) for s in states], axis=0))
  return [pad(method, jax.tree.map(jnp.asarray, s), widths) for s in states]
