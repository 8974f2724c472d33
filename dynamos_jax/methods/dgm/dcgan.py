"""DGM with one class a task on the DCGAN G and D (MNIST, SVHN, CIFAR-10; dgm-spec 2, 5, 6).

``methods/dgm/dgm.py`` runs the algorithm; what depends on G's family lives in
one module per family with the same functions: this one (the DCGAN G of
``methods/dgm/generator_dcgan.py``, ``dgm.generator=dcgan``) and ``dgm/imagenet``
(the ResNet G, ten classes a task). ``DGM.family`` picks the module. Each
function takes the ``DGM`` method first, as ``shapes`` and
``replay`` do:

  discriminator(method)                  D's Linen module
  init_d(method, key)                    D's variables {params, batch_stats}
  init(method, key)                      the fresh method state
  new_heads(method, state, key, t)       G's params with task t's head(s) drawn
  exists(method, g, state, t)            the masks' existence while task t trains
  noise(method, key, labels, t)          the step's noise for a real batch
  forward(method, g, stats, z, t, masks, counts, labels, train, valid)
  conditioners(method, g, state, t)      per weight, the gradient factor 1 - M^{<t}
  reg_weight(method, state, t)           lambda_RU times the growth's size ratio
  replay(method, state, position, b, t)  the past's images, labels, valid rows
  end_task(method, state, task)          binarise, cumulate, grow
  common_shape(method, states)           several seeds' states at one shape

Here a task is a class: the masks exist on the task's active counts
(DGMw: weights, DGMa: output channels), G has one head per task, the noise
carries the task's one-hot, and the replay is ``replay``'s.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import hat
from dynamos_jax.methods.dgm import replay as dgm_replay
from dynamos_jax.methods.dgm import shapes
from dynamos_jax.methods.dgm.state import DGMState
from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm.discriminator import Discriminator, init_discriminator


def discriminator(method) -> Discriminator:
  return Discriminator(method.num_classes, method.ndf)


def init_d(method, key) -> dict:
  return init_discriminator(key, method.num_classes, method.spec.channels, method.ndf)


def init(method, key) -> DGMState:
  d_key, g_key, own = jax.random.split(key, 3)
  g, g_stats, counts = gen.init(g_key, method.spec, method.shape_multiple)
  return DGMState(**method.fresh_fields(g, g_stats, counts, init_d(method, d_key), own))


def new_heads(method, state, key, t: int) -> dict:
  """G's params with task t's head drawn (its inputs: the task's conv3 channels)."""
  counts = np.asarray(state.counts[t])
  head = gen.head_init(key, method.spec, int(counts[2]), state.g["head"].shape[1])
  return dict(state.g, head=state.g["head"].at[t].set(head))


def mask_exists(method, g, counts) -> tuple[jax.Array, ...]:
  """The existence masks at active counts [L], shaped as the embeddings (DGMw: weights,
  DGMa: channels); counts may be traced."""
  if method.spec.variant == "w":
    return gen.weight_exist(counts, [w.shape for w in g["w"]])
  return gen.channel_exist(counts, gen.widths_of(g))


def exists(method, g, state, t) -> tuple[jax.Array, ...]:
  return mask_exists(method, g, state.counts[t])


def class_noise(method, key, n: int, label) -> jax.Array:
  """z [n, nz] of class ``label`` (its one-hot prefix with ``dgm.onehot``)."""
  return gen.noise(key, n, method.spec.nz, jnp.full((n,), label, jnp.int32),
                   method.num_classes if method.onehot else 0)


def noise(method, key, labels, t) -> jax.Array:
  """z [B, nz] of class t for every row (a task is a class; padding rows too)."""
  return class_noise(method, key, labels.shape[0], t)


def forward(method, g, stats, z, t, masks, counts, labels, train, valid):
  del labels  # one head per task
  return gen.forward(method.spec, g, stats, z, t, masks, counts, train=train, sample_mask=valid)


def conditioners(method, g, state, t) -> tuple[jax.Array, ...]:
  """Per conv weight, the gradient factor: 0 on reserved (frozen) and absent entries."""
  counts = state.counts[t]
  cum = state.cum
  wexist = gen.weight_exist(counts, [w.shape for w in g["w"]])
  if method.spec.variant == "w":
    return tuple(hat.weight_conditioner_w(c, x) for c, x in zip(cum, wexist))
  return tuple(hat.weight_conditioner_a(cum[l], cum[l - 1] if l else None, wexist[l])
               for l in range(len(cum)))


def reg_weight(method, state, t):
  """lambda_RU times the task's active channels over the start's (spec 4)."""
  return method.lambda_ru * jnp.sum(state.counts[t]) / sum(method.spec.start)


def replay(method, state, position, b: int, t: int):
  """Past classes' images at batch ``position``: ([t, b, 32, 32, C], None, None), the rows
  labelled by class and present where the real rows are (``classifier_steps``)."""
  positions = position * method.batch_size + jnp.arange(b)
  return dgm_replay.replay(method, state, positions, t), None, None


def end_task(method, state, task):
  """Binarise at s_max, cumulate, keep the embeddings, grow (spec 3.2, 6)."""
  t = task.index
  state = jax.tree.map(jnp.asarray, state)
  g = state.g
  counts = np.asarray(state.counts[t])
  state, ones = shapes.close_masks(method, state, mask_exists(method, g, counts), t)
  new, widths = shapes.grown(method, g, counts, ones - np.asarray(state.reserved))
  state = state.replace(reserved=jnp.asarray(ones, jnp.int32))
  return shapes.pad(method, state, widths, grown=(t, counts, new))


def common_shape(method, states: list) -> list:
  return shapes.common_shape(method, states)
