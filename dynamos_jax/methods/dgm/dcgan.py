"""DGM with one class a task on the DCGAN G and D (MNIST, SVHN, CIFAR-10; docs/dgm.md#networks).

``DCGANFamily``: the ``family.GeneratorFamily`` of the DCGAN G
(``methods/dgm/generator_dcgan.py``, ``dgm.generator=dcgan``). Here a task is
a class: the masks exist on the task's active counts (DGMw: weights, DGMa:
output channels), G has one head and one BN per task, the noise carries the
task's one-hot, and the replay is ``replay``'s. What a user reads off a state
(``summary``): three masked convolutions (``LAYERS``), a task's masks over the
channels it was active on (``state.counts[t]``); class t is task t's.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import hat, shapes
from dynamos_jax.methods.dgm import replay as dgm_replay
from dynamos_jax.methods.dgm.discriminator import Discriminator, init_discriminator
from dynamos_jax.methods.dgm.family import GeneratorFamily
from dynamos_jax.methods.dgm.state import DGMState


class DCGANFamily(GeneratorFamily):
  """The DCGAN G's family (the module docstring); members documented in ``GeneratorFamily``."""

  LAYERS: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "conv3")

  # --- the algorithm ---------------------------------------------------------------------------

  def discriminator(self) -> Discriminator:
    return Discriminator(self.method.num_classes, self.method.ndf, self.method.spec.conv)

  def init_d(self, key) -> dict:
    method = self.method
    return init_discriminator(key, method.num_classes, method.spec.channels, method.ndf)

  def init(self, key) -> DGMState:
    method = self.method
    d_key, g_key, own = jax.random.split(key, 3)
    g, g_stats, counts = gen.init(g_key, method.spec, method.shape_multiple)
    return DGMState(**method.fresh_fields(g, g_stats, counts, self.init_d(d_key), own))

  def new_heads(self, g, key, t: int, counts) -> dict:
    """G's params with task t's head drawn (its inputs: the task's conv3 channels)."""
    head = gen.head_init(key, self.method.spec, int(counts[2]), g["head"].shape[1])
    return dict(g, head=g["head"].at[t].set(head))

  def mask_exists(self, g, counts) -> tuple[jax.Array, ...]:
    """The existence masks at active counts [L], shaped as the embeddings (DGMw: weights,
    DGMa: channels); counts may be traced."""
    if self.method.spec.variant == "w":
      return gen.weight_exist(counts, [w.shape for w in g["w"]])
    return gen.channel_exist(counts, gen.widths_of(g))

  def exists(self, g, state, t) -> tuple[jax.Array, ...]:
    return self.mask_exists(g, state.counts[t])

  def class_noise(self, key, n: int, label) -> jax.Array:
    """z [n, nz] of class ``label`` (its one-hot prefix with ``dgm.onehot``)."""
    return gen.noise(
      key, n, self.method.spec.nz, jnp.full((n,), label, jnp.int32), self.onehot_width()
    )

  def noise(self, key, labels, t) -> jax.Array:
    """z [B, nz] of class t for every row (a task is a class; padding rows too)."""
    return self.class_noise(key, labels.shape[0], t)

  def forward(self, g, stats, z, t, masks, counts, labels, train, valid):
    del labels  # one head per task
    return gen.forward(
      self.method.spec, g, stats, z, t, masks, counts, train=train, sample_mask=valid
    )

  def conditioners(self, g, state, t) -> tuple[jax.Array, ...]:
    """Per conv weight, the gradient factor: 0 on reserved (frozen) and absent entries."""
    counts = state.counts[t]
    cum = state.cum
    wexist = gen.weight_exist(counts, [w.shape for w in g["w"]])
    if self.method.spec.variant == "w":
      return tuple(hat.weight_conditioner_w(c, x) for c, x in zip(cum, wexist))
    return tuple(
      hat.weight_conditioner_a(cum[l], cum[l - 1] if l else None, wexist[l])
      for l in range(len(cum))
    )

  def reg_weight(self, state, t):
    """lambda_RU times the task's active channels over the start's
    (docs/dgm.md#sparsity-regulariser)."""
    method = self.method
    return method.lambda_ru * jnp.sum(state.counts[t]) / sum(method.spec.start)

  def replay(self, state, position, b: int, t: int):
    """Past classes' images at batch ``position``: ([t, b, 32, 32, C], None, None), the rows
    labelled by class and present where the real rows are (``classifier_steps``)."""
    method = self.method
    positions = position * method.batch_size + jnp.arange(b)
    return dgm_replay.replay(method, state, positions, t), None, None

  def end_task(self, state, task):
    """Binarise at s_max, cumulate, keep the embeddings, grow
    (docs/dgm.md#cumulative-masks-and-gradient-conditioning, docs/dgm.md#growth-after-each-task)."""
    method = self.method
    t = task.index
    state = jax.tree.map(jnp.asarray, state)
    counts = np.asarray(state.counts[t])
    state, ones = shapes.close_masks(method, state, t)
    new, widths = shapes.grown(method, state.g, counts, ones - np.asarray(state.reserved))
    state = state.replace(reserved=jnp.asarray(ones, jnp.int32))
    return shapes.pad(method, state, widths, grown=(t, counts, new))

  def common_shape(self, states: list) -> list:
    return shapes.common_shape(self.method, states)

  # --- what a user reads off a state (``summary``) ---------------------------------------------

  def onehot_width(self) -> int:
    return self.method.num_classes if self.method.onehot else 0

  def task_exists(self, state, tasks: int) -> list[tuple]:
    """Per finished task, per layer, 1 on the entries of its active channels."""
    g = jax.tree.map(jnp.asarray, state.g)
    return [self.mask_exists(g, state.counts[t]) for t in range(tasks)]

  def generate(
    self, state, z: jax.Array, label: int, finished: bool = True, binary: bool | None = None
  ) -> jax.Array:
    """Images [N, 32, 32, C] of class (= task) ``label``: its counts, BN and head, its masks
    (soft sigmoid(S e) as the replay, or binarised if ``binary``)."""
    method = self.method
    counts = state.counts[label]
    exists = self.mask_exists(state.g, counts)
    emb = tuple(e[label] for e in state.past_emb) if finished else state.g["emb"]
    if binary:
      masks = tuple(hat.binarise(e, method.smax, x) for e, x in zip(emb, exists))
    else:
      masks = method._masks(emb, method.smax, exists)
    return gen.forward(method.spec, state.g, state.g_stats, z, label, masks, counts, False)[0]

  def samples(self, state, classes: int, n: int, base: jax.Array) -> np.ndarray:
    """uint8 [classes, n, 32, 32, C]: ``generate`` of each class from noise ``base`` [n, nz],
    its one-hot prefix set to the class; pixels round(127.5 (x + 1))."""
    width = self.onehot_width()

    # One program for every class (the class is traced): run op by op, each of G's ops
    # compiled again for the shapes of every task, this took most of the time between tasks.
    @jax.jit
    def one(state, c):
      z = base
      if width:
        z = z.at[:, :width].set(jax.nn.one_hot(jnp.full((n,), c), width))
      return self.generate(state, z, c)

    rows = []
    for c in range(classes):
      images = np.asarray(one(state, c), np.float32)
      rows.append(np.clip(np.round(127.5 * (images + 1.0)), 0, 255).astype(np.uint8))
    return np.stack(rows)

  def masked_params(self, state, tasks: int) -> list[int]:
    """[tasks + 1] conv1-3 weights at each task's counts, the last after the growth that
    followed task tasks - 1."""
    return [
      gen.masked_count(self.method.spec, np.asarray(state.counts[t])) for t in range(tasks + 1)
    ]

  def private_params(self, counts) -> int:
    """A task's own parameters at ``counts``: its BN's and its head's."""
    return sum(gen.private_count(self.method.spec, np.asarray(counts)))

  def row(self, state, t: int, l: int) -> dict:
    """The layer's channels while task t trained."""
    return {"channels": int(np.asarray(state.counts[t])[l])}

  def arrays(self, state, finished: int) -> dict:
    """dgm/plots' arrays (``summary.arrays``): counts [finished + 1, 3] (each task's
    active channels, the last row after the growth that followed the last finished task),
    binaries / exists [finished][3] bool, the files' weights (G now on its active entries,
    each task's head and BN) and masks cut to each task's channels, by name; names and
    layers (LAYERS), params and worst [finished + 1] (the growth curve and its linear worst
    case), ylabel."""
    method = self.method
    layers = self.LAYERS
    spec = method.spec
    counts = np.asarray(state.counts)
    g = jax.tree.map(jnp.asarray, state.g)
    binaries, exists, weights, masks = [], [], {}, {}
    for t in range(finished):
      exist = self.mask_exists(g, counts[t])
      binary = [
        np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, jnp.asarray(x))) > 0
        for e, x in zip(state.past_emb, exist)
      ]
      binaries.append(binary)
      exists.append([np.broadcast_to(np.asarray(x) > 0, b.shape) for x, b in zip(exist, binary)])
      inputs, c = spec.inputs(counts[t]), counts[t]
      for l, b in enumerate(binary):
        masks[f"task{t}.{layers[l]}"] = (
          b[: inputs[l], : int(c[l])] if spec.variant == "w" else b[: int(c[l])]
        )
      weights[f"task{t}.head"] = np.asarray(g["head"][t][: int(c[2])])
      for l in range(3):
        weights[f"task{t}.bn{l + 1}.scale"] = np.asarray(g["scale"][l][t][: int(c[l])])
        weights[f"task{t}.bn{l + 1}.bias"] = np.asarray(g["bias"][l][t][: int(c[l])])
    # G now: the widths after the growth that followed the last finished task.
    rows = counts[: min(finished + 1, len(counts))]
    inputs = spec.inputs(rows[-1])
    for l, w in enumerate(g["w"]):
      weights[layers[l]] = np.asarray(w)[: inputs[l], : int(rows[-1][l])]
    worst = rows[0][None, :] * (1 + np.arange(len(rows)))[:, None]
    return {
      "counts": rows,
      "binaries": binaries,
      "exists": exists,
      "weights": weights,
      "masks": masks,
      "names": layers,
      "layers": layers,
      "ylabel": "conv1-3 weights",
      "params": [gen.masked_count(spec, r) for r in rows],
      "worst": [gen.masked_count(spec, r) for r in worst],
    }
