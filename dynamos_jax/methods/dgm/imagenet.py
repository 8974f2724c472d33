"""DGM with ten classes a task on the ResNet G and D (ImageNet-50).

See docs/dgm.md#imagenet-networks and docs/dgm.md#imagenet-code-options.

``ResNetFamily``: the ``family.GeneratorFamily`` of the ResNet G
(``methods/dgm/generator_resnet.py``, ``dgm.generator=resnet``), each member
read off the authors' ImageNet code (``approaches/DGMw_imnet.py``,
``networks/net_DGMw_imnet.py``); ``scale`` and ``grown_aux`` are the code's
options ``DGM`` uses directly (``dgm.schedule=imagenet``, ``dgm.aux_head=grow``).

- State (``ResNetDGMState``): DGM's plus ``sizes`` int32 [10, 2], each masked
  weight's allocated (in, out). The masks, the regulariser, the cumulative
  masks and the growth cover the allocated entries (idle shortcut convs
  included, as the reference's); a task runs on its ``counts`` [10].
- Labels: a task owns classes C t .. C t + C - 1 (C = ``classes_per_task``);
  every sample's label picks its G head. The D-step and G-step fakes carry
  the real batch's labels (the code's ``generate_noise(n, c_label)``), their
  noise's one-hot prefix is ``dgm.onehot_dims`` wide (the code writes 100
  of 128 dims: ``nb_label = 100``, its ten looped tasks).
- Replay (docs/dgm.md#replay; ``replay``): for each past task u < t,
  C * floor(N_t / C) slots, floor(N_t / C) per class (the code's ``int(len(dataset) / 10)``),
  generated from the task-start snapshot of G at s = S with task u's masks,
  BN and heads, eval BN; re-permuted every epoch, and batch i takes slots
  i B .. i B + B - 1 of that order (so each past task gives B images of
  mixed classes). The slot's noise is keyed by (task, u, slot): the same
  fixed set every epoch, as the code's set generated once per task.
  Positions past the set (N_t - C floor(N_t / C) of them, < C) are absent,
  as the code's shorter slices of the last batch.
- Schedule ``dgm.schedule=imagenet`` (docs/dgm.md#scale-schedule; ``scale``):
  s^e = 1/S + (S - 1/S) (e + 1) / I, s = 1/s^e + (s^e - 1/s^e) i /
  (floor(N / B) + 1) with i the batch index.
- Past masks ``dgm.past_masks=binary`` (docs/dgm.md#soft-masks-for-past-tasks):
  a past task generates with 1[sigmoid(S e) >= 0.5] (the code stores binary
  sparse masks), so its images do not move while later tasks train free weights.
- Next task's embeddings 6 / S (the code's ``expand_embeddings``), 0 at task
  0; its BN scales U(0, 1) (PyTorch 1.0's default); its C heads drawn at its
  start; lambda_RU's multiplier the code's ``total_size_n_params`` ratio
  (``rg.logged_count``).
- D: ``dgm.aux_head=grow`` (``grown_aux``): at each task > 0 the aux head's
  columns of the classes seen before are kept, the others drawn Xavier-
  uniform (gain 1) with the fans of the code's new Linear(2048 -> C (t + 1)).

What a user reads off a state (``summary``): ten masked weights
(``LAYERS``), each task's masks over the entries allocated while it trained,
per-task BN and per-class heads. The state keeps only the allocation now
(``sizes``), not the one each past task ran on; ``allocations`` recovers
those by replaying ``end_task``'s growth on the kept embeddings (a
deterministic function of them), and checks the replay against the counts
the state recorded.

Not followed: the code's new aux Linear has a zero-initialised bias from
task 1 on (its task-0 head has none); here the ResNet D's aux head never has
one. The code skips a batch of one image; here it trains. The code's L1
term between two tensors without gradient in G's loss is left out (it moves
only the logged loss).
"""

from typing import ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import generator_resnet as rg
from dynamos_jax.methods.dgm import growth_resnet, hat
from dynamos_jax.methods.dgm.discriminator import ResNetDiscriminator
from dynamos_jax.methods.dgm.family import GeneratorFamily
from dynamos_jax.methods.dgm.replay import REPLAY
from dynamos_jax.methods.dgm.shapes import BN, GROW, close_masks, pad_to
from dynamos_jax.methods.dgm.state import DGMState

# fold_in constant of the grown aux head's draw (methods/dgm/dgm.py holds 1-2, shapes 3-4,
# replay 5, summary 16).
AUX = 6


@flax.struct.dataclass
class ResNetDGMState(DGMState):
  """``DGMState`` (L = 10 masked weights) plus sizes: int32 [10, 2] the allocated
  (in, out) of each weight (``methods/dgm/generator_resnet.py``)."""

  sizes: jax.Array


def scale(epoch, position, epochs: int, samples, batch_size: int, smax: float):
  """The ImageNet code's schedule (module docstring): (s, s^e), float32 [] each."""
  inv = 1.0 / smax
  e = jnp.asarray(epoch, jnp.float32)
  s_e = jnp.float32(inv) + jnp.float32(smax - inv) * (e + 1.0) / epochs
  batches = jnp.floor(jnp.asarray(samples, jnp.float32) / batch_size) + 1.0
  ratio = jnp.asarray(position, jnp.float32) / batches
  return 1.0 / s_e + (s_e - 1.0 / s_e) * ratio, s_e


def allocated(g, sizes) -> tuple[jax.Array, ...]:
  """[C_in, C_out, 1, 1] float 1 on each weight's allocated entries (sizes traced ok)."""
  return rg.weight_exist(
    [(sizes[l, 0], sizes[l, 1]) for l in range(len(g["w"]))], [w.shape for w in g["w"]]
  )


def logged_size(spec, sizes):
  """The code's ``total_size_n_params`` of sizes [10, 2] (traced ok; ``rg.logged_count``)."""
  k2 = jnp.asarray(rg.KERNELS[1:]) ** 2
  return 10 * 16 * spec.ngf + jnp.sum(sizes[1:, 0] * sizes[1:, 1] * k2)


def grown_aux(key, old: dict, t: int, c: int) -> dict:
  """The aux head at task t > 0: columns < C t kept, the others Xavier-uniform (gain 1) on
  the code's Linear(F -> C (t + 1)) fans; a bias (the MNIST D's), if any: kept / 0."""
  kernel = old["kernel"]
  bound = np.sqrt(6.0 / (kernel.shape[0] + c * (t + 1)))
  keep = jnp.arange(kernel.shape[1]) < c * t
  out = {
    "kernel": jnp.where(
      keep[None], kernel, jax.random.uniform(key, kernel.shape, kernel.dtype, -bound, bound)
    )
  }
  if "bias" in old:
    out["bias"] = jnp.where(keep, old["bias"], 0.0)
  return out


def worst_case_sizes(spec, t: int) -> np.ndarray:
  """int [10, 2] every width at the linear worst case f (1 + t) (nz stays nz)."""
  w = spec.ngf * (1 + t)
  return np.asarray([(spec.nz, w)] + [(w, w)] * 9, np.int32)


def masked_count_worst(spec, t: int) -> int:
  """The masked weights at the linear worst case after t growths (``worst_case_sizes``)."""
  return rg.masked_count(worst_case_sizes(spec, t))


def _allocated_exists(state, sizes, tasks: int) -> list[tuple[np.ndarray, ...]]:
  """Per task t < ``tasks``, float [C_in, C_out, 1, 1] per weight: 1 on ``sizes[t]``."""
  g = jax.tree.map(jnp.asarray, state.g)
  return [tuple(np.asarray(x) for x in allocated(g, sizes[t])) for t in range(tasks)]


class ResNetFamily(GeneratorFamily):
  """The ResNet G's family (the module docstring); members documented in
  ``GeneratorFamily``."""

  # The ten masked weights in the state's order (FC, then conv1, conv2, shortcut per block).
  LAYERS: ClassVar[tuple[str, ...]] = ("fc1",) + tuple(
    f"block{b}.{n}" for b in (1, 2, 3) for n in ("conv1", "conv2", "short")
  )
  # The seven channel groups (rg.groups), named by the weight whose outputs they are.
  GROUPS: ClassVar[tuple[str, ...]] = (
    "fc1",
    "block1.conv1",
    "block1.conv2",
    "block2.conv1",
    "block2.conv2",
    "block3.conv1",
    "block3.conv2",
  )

  # --- the step's pieces (traced) ------------------------------------------------------------

  def exists(self, g, state, t) -> tuple[jax.Array, ...]:
    """The masks' existence while a task trains: the weights' allocation (``allocated``)."""
    del t
    return allocated(g, state.sizes)

  def conditioners(self, g, state, t) -> tuple[jax.Array, ...]:
    """Per weight, the gradient factor 1 - M^{<t} on the allocated entries (DGMw's)."""
    del t
    return tuple(
      hat.weight_conditioner_w(c, x) for c, x in zip(state.cum, allocated(g, state.sizes))
    )

  def reg_weight(self, state, t):
    """lambda_RU times the code's size ratio (now over the start), float32 []."""
    del t
    method = self.method
    start = rg.logged_count(method.spec, method.spec.start_sizes())
    return method.lambda_ru * logged_size(method.spec, state.sizes).astype(jnp.float32) / start

  def onehot_width(self) -> int:
    """The noise's one-hot prefix width (``dgm.onehot_dims``, 0: none)."""
    method = self.method
    return (method.onehot_dims or method.num_classes) if method.onehot else 0

  def noise(self, key, labels, t):
    """z [N, nz] with the labels' one-hot prefix (``onehot_width`` dims)."""
    del t  # each row's own class
    return gen.noise(key, labels.shape[0], self.method.spec.nz, labels, self.onehot_width())

  def forward(self, g, stats, z, t, masks, counts, labels, train, valid):
    """Task t's images, each row through its label's head (``rg.forward``)."""
    return rg.forward(self.method.spec, g, stats, z, t, masks, counts, labels, train, valid)

  def past_masks(self, state, u, ex):
    """Task u's masks at s = S: binarised (``past_masks=binary``) or soft sigmoid(S e)."""
    method = self.method
    emb = tuple(e[u] for e in state.past_emb)
    if method.past_masks == "binary":
      return tuple(hat.binarise(e, method.smax, x) for e, x in zip(emb, ex))
    return tuple(hat.mask(e, method.smax, x) for e, x in zip(emb, ex))

  def replay(self, state, position, b: int, t: int):
    """Past tasks' images at batch ``position``: ([t, b, 32, 32, 3], labels int32 [t, b],
    valid bool [t, b]); the module docstring's layout. Traced inside the step."""
    method = self.method
    key = method._key(state, REPLAY, t)
    if method.replay == "fresh":
      key = jax.random.fold_in(key, state.step_in_task)
    c = method.classes_per_task
    epoch = state.step_in_task // state.batches
    per_class = state.samples // c
    total = per_class * c
    slots = method.replay_slots
    q = position * method.batch_size + jnp.arange(b)
    ok = q < total
    g = dict(state.g, w=state.snapshot)
    ex = allocated(g, state.sizes)

    def one(_, u):
      k_order, k_noise = jax.random.split(jax.random.fold_in(key, u))
      r = jax.random.uniform(jax.random.fold_in(k_order, epoch), (slots,))
      # A uniform permutation of the set's slots [0, total), drawn at a static size.
      order = jnp.argsort(jnp.where(jnp.arange(slots) < total, r, r + 2.0))
      slot = order[jnp.minimum(q, slots - 1)]
      labels = u * c + jnp.minimum(slot // jnp.maximum(per_class, 1), c - 1)
      z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k_noise, i), (method.spec.nz,)))(
        slot
      )
      width = self.onehot_width()
      if width:
        z = z.at[:, :width].set(jax.nn.one_hot(labels, width))
      images, _ = rg.forward(
        method.spec,
        g,
        state.g_stats,
        z,
        u,
        self.past_masks(state, u, ex),
        state.counts[u],
        labels,
        train=False,
      )
      return None, (images, labels, ok)

    return jax.lax.scan(one, None, jnp.arange(t), unroll=method.unroll)[1]

  # --- lifecycle (host) ----------------------------------------------------------------------

  def discriminator(self) -> ResNetDiscriminator:
    """The ResNet D; ``dgm.ndf`` is its stem's width (64: ResNet-18)."""
    method = self.method
    return ResNetDiscriminator(method.num_classes, width=method.ndf, blocks=method.d_blocks)

  def init_d(self, key) -> dict:
    return dict(
      self.discriminator().init(key, jnp.zeros((2, 32, 32, self.method.spec.channels)), train=False)
    )

  def init(self, key) -> ResNetDGMState:
    """The method's fresh state (``DGM.init``'s, with the ResNet G)."""
    method = self.method
    d_key, g_key, own = jax.random.split(key, 3)
    g, g_stats, sizes = rg.init(g_key, method.spec, method.shape_multiple)
    fields = method.fresh_fields(g, g_stats, method.spec.start_counts(), self.init_d(d_key), own)
    return ResNetDGMState(**fields, sizes=jnp.asarray(sizes, jnp.int32))

  def new_heads(self, g, key, t: int, counts) -> dict:
    """G's params with task t's C heads drawn from ``key`` (inputs: the task's O_3 channels)."""
    c = self.method.classes_per_task
    active = int(counts[8])  # O_3, the output BN's channels
    w, bias = rg.head_init(key, self.method.spec, active, g["head"].shape[1])
    return dict(
      g,
      head=g["head"].at[t * c : (t + 1) * c].set(w),
      head_bias=g["head_bias"].at[t * c : (t + 1) * c].set(bias),
    )

  def _repad(self, state, params, stats, **changes):
    """``state`` with G's params/stats replaced and its mask arrays padded to their shapes."""
    shapes = [w.shape for w in params["w"]]
    return state.replace(
      g=params,
      g_stats=stats,
      g_opt=self.method.tx_g.init(params),
      past_emb=tuple(pad_to(p, (p.shape[0], *s)) for p, s in zip(state.past_emb, shapes)),
      cum=tuple(pad_to(c, s) for c, s in zip(state.cum, shapes)),
      snapshot=tuple(pad_to(w, s) for w, s in zip(state.snapshot, shapes)),
      **changes,
    )

  def end_task(self, state, task):
    """Binarise at S, cumulate, keep the embeddings, grow by the code's rule
    (docs/dgm.md#cumulative-masks-and-gradient-conditioning, docs/dgm.md#imagenet-growth)."""
    method = self.method
    t = task.index
    state = jax.tree.map(jnp.asarray, state)
    g, sizes = state.g, np.asarray(state.sizes)
    state, ones = close_masks(method, state, t)
    if method.expansion == "none":
      new_sizes, new_counts = sizes, np.asarray(state.counts[t])
    else:
      new_sizes, new_counts = growth_resnet.grown_sizes(
        method.spec, sizes, ones - np.asarray(state.reserved)
      )
    widths = tuple(
      max(gen.round_up(a, method.shape_multiple), w)
      for a, w in zip(rg.size_widths(new_sizes), rg.widths_of(g))
    )
    params, stats = rg.grow(
      method._key(state, GROW, t), method.spec, g, state.g_stats, sizes, new_sizes, widths
    )
    params["emb"] = rg.embeddings(params, 6.0 / method.smax)
    if t + 1 < method.spec.num_tasks:
      scale0 = rg.bn_init(method._key(state, BN, t + 1), rg.groups(new_counts), widths)
      params["scale"] = tuple(x.at[t + 1].set(v) for x, v in zip(params["scale"], scale0))
    return self._repad(
      state,
      params,
      stats,
      reserved=jnp.asarray(ones, jnp.int32),
      counts=state.counts.at[t + 1 :].set(jnp.asarray(new_counts, jnp.int32)),
      sizes=jnp.asarray(new_sizes, jnp.int32),
    )

  def pad(self, state, widths):
    """``state`` at group widths ``widths`` [7] (each >= its own), every active entry kept:
    a growth from its sizes to the same sizes draws nothing it keeps (its key is unused)."""
    state = jax.tree.map(jnp.asarray, state)
    if tuple(widths) == rg.widths_of(state.g):
      return state
    sizes = np.asarray(state.sizes)
    params, stats = rg.grow(
      jax.random.key(0), self.method.spec, state.g, state.g_stats, sizes, sizes, widths
    )
    return self._repad(state, params, stats)

  def common_shape(self, states: list) -> list:
    """Several seeds' states (each grown by its own masks) padded to their widest widths."""
    widths = tuple(int(w) for w in np.max([rg.widths_of(s.g) for s in states], axis=0))
    return [self.pad(s, widths) for s in states]

  # --- what a user reads off a state (``summary``; host) -------------------------------------

  def samples(self, state, classes: int, n: int, base: jax.Array) -> np.ndarray:
    """uint8 [classes, n, 32, 32, 3] of classes 0..classes-1 from noise ``base`` [n, nz]
    (its one-hot prefix set per class): s = S, eval BN, each class's task's masks (as the
    replay's), heads and sub-network."""
    method = self.method
    state = jax.tree.map(jnp.asarray, state)
    ex = allocated(state.g, state.sizes)
    rows = []
    for k in range(classes):
      u = k // method.classes_per_task
      labels = jnp.full((n,), k, jnp.int32)
      width = self.onehot_width()
      z = base.at[:, :width].set(jax.nn.one_hot(labels, width)) if width else base
      images, _ = rg.forward(
        method.spec,
        state.g,
        state.g_stats,
        z,
        u,
        self.past_masks(state, u, ex),
        state.counts[u],
        labels,
        False,
      )
      rows.append(np.clip(np.round(127.5 * (np.asarray(images) + 1.0)), 0, 255).astype(np.uint8))
    return np.stack(rows)

  def generate(
    self, state, z: jax.Array, label: int, finished: bool = True, binary: bool | None = None
  ) -> jax.Array:
    """Images [N, 32, 32, 3] in [-1, 1] of class ``label`` from noise z [N, nz] (its one-hot
    prefix written): eval BN, s = S, its task's masks (the kept embedding once ``finished``,
    else the one being trained; binarised per ``binary``, None: per ``dgm.past_masks``, as
    the replay), BN and counts, and its own head."""
    method = self.method
    u = label // method.classes_per_task
    ex = allocated(state.g, state.sizes)
    if binary is None:
      binary = method.past_masks == "binary"
    emb = tuple(e[u] for e in state.past_emb) if finished else state.g["emb"]
    fn = hat.binarise if binary else hat.mask
    masks = tuple(fn(e, method.smax, x) for e, x in zip(emb, ex))
    labels = jnp.full(z.shape[:1], label, jnp.int32)
    return rg.forward(
      method.spec, state.g, state.g_stats, z, u, masks, state.counts[u], labels, False
    )[0]

  def allocations(self, state, tasks: int) -> np.ndarray:
    """int [tasks + 1, 10, 2]: the allocated (in, out) of each weight while task t trained
    (row t < tasks) and after the growth that followed task tasks - 1 (last row).

    Replays ``end_task``'s growth: task t's binary mask is its kept embedding
    binarised over its allocation, the cumulated masks' new ones are the
    growth's input. Raises ValueError where the replay's counts differ from
    the state's (a state grown by another rule).
    """
    method = self.method
    sizes = method.spec.start_sizes()
    rows, reserved, cum = [sizes], np.zeros(len(self.LAYERS), np.int64), None
    g = jax.tree.map(jnp.asarray, state.g)
    counts = np.asarray(state.counts)
    for t in range(tasks):
      ex = allocated(g, sizes)
      binary = [
        np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, x))
        for e, x in zip(state.past_emb, ex)
      ]
      cum = binary if cum is None else [np.maximum(c, b) for c, b in zip(cum, binary)]
      ones = np.asarray([int(c.sum()) for c in cum])
      if method.expansion == "none":
        new_counts = counts[t]
      else:
        sizes, new_counts = growth_resnet.grown_sizes(method.spec, sizes, ones - reserved)
      reserved = ones
      if t + 1 < len(counts) and not np.array_equal(new_counts, counts[t + 1]):
        raise ValueError(
          f"the growth after task {t} gives counts {new_counts.tolist()}, the "
          f"state holds {counts[t + 1].tolist()}"
        )
      rows.append(np.asarray(sizes, np.int32))
    return np.stack(rows).astype(np.int32)

  def task_exists(self, state, tasks: int) -> list[tuple[np.ndarray, ...]]:
    """Per finished task, float [C_in, C_out, 1, 1] per weight: its allocated entries then
    (the entries its mask, binarised at end_task, covers)."""
    return _allocated_exists(state, self.allocations(state, tasks), tasks)

  def masked_params(self, state, tasks: int) -> list[int]:
    """[tasks + 1] allocated masked weights (``rg.masked_count``) each task trained on, the
    last after the growth that followed task tasks - 1."""
    return [rg.masked_count(s) for s in self.allocations(state, tasks)]

  def private_params(self, counts) -> int:
    """A task's own parameters at counts [10]: its 7 BN's scale and bias on the active
    channels, and its classes' heads (3x3 conv O_3 -> n_c, with bias)."""
    spec = self.method.spec
    o3 = int(np.asarray(counts)[8])
    head = o3 * spec.channels * rg.HEAD_KERNEL**2 + spec.channels
    bn = 2 * int(sum(int(c) for c in rg.groups(np.asarray(counts))))
    return bn + self.method.classes_per_task * head

  def row(self, state, t: int, l: int) -> dict:
    """The weight's name."""
    return {"name": self.LAYERS[l]}

  def arrays(self, state, finished: int) -> dict:
    """dgm/plots' arrays: widths [finished + 1, 7] (each task's channel groups, row 0 the
    start, the last after the growth that followed the last finished task), binaries /
    exists [finished][10] bool (each finished task's binary mask over its allocation), and
    the files' weights (the allocation now; each finished task's BN, its classes' heads)
    and masks cut to each task's allocation, by name; sizes (``allocations``); the growth
    curve's names (GROUPS), params and worst [finished + 1] (``masked_params``,
    ``masked_count_worst``), layers (LAYERS), ylabel."""
    method = self.method
    sizes = self.allocations(state, finished)
    counts = np.asarray(state.counts)
    exists = _allocated_exists(state, sizes, finished)
    g = state.g
    binaries, cut_exists, weights, masks = [], [], {}, {}
    c = method.classes_per_task
    for t in range(finished):
      binary = [
        np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, jnp.asarray(x))) > 0
        for e, x in zip(state.past_emb, exists[t])
      ]
      binaries.append(binary)
      cut_exists.append([np.broadcast_to(x > 0, b.shape) for x, b in zip(exists[t], binary)])
      for l, (b, (i, o)) in enumerate(zip(binary, sizes[t])):
        masks[f"task{t}.{self.LAYERS[l]}"] = b[:i, :o]
      group = rg.groups(counts[t])
      for l, a in enumerate(group):
        weights[f"task{t}.bn{l}.scale"] = np.asarray(g["scale"][l][t][: int(a)])
        weights[f"task{t}.bn{l}.bias"] = np.asarray(g["bias"][l][t][: int(a)])
      for k in range(t * c, (t + 1) * c):
        weights[f"class{k}.head"] = np.asarray(g["head"][k][: int(group[6])])
        weights[f"class{k}.head_bias"] = np.asarray(g["head_bias"][k])
    for l, (w, (i, o)) in enumerate(zip(g["w"], sizes[-1])):
      weights[self.LAYERS[l]] = np.asarray(w)[:i, :o]
    rows = counts[: min(finished + 1, len(counts))]
    widths = np.asarray([rg.groups(r) for r in rows])
    return {
      "counts": widths,
      "binaries": binaries,
      "exists": cut_exists,
      "weights": weights,
      "masks": masks,
      "sizes": sizes,
      "names": self.GROUPS,
      "layers": self.LAYERS,
      "params": [rg.masked_count(s) for s in sizes],
      "worst": [masked_count_worst(method.spec, t) for t in range(len(widths))],
      "ylabel": "allocated masked weights",
    }
