"""``summary``'s pieces for the ResNet generator (ImageNet-50; dgm-spec 16).

The same functions as ``summary_dcgan``'s, with the ResNet G's shapes
(``methods/dgm/generator_resnet.py``): ten masked weights (``LAYERS``), each
task's masks over the entries allocated while it trained, per-task BN and
per-class heads (a task owns ``classes_per_task`` consecutive classes).

The state keeps only the allocation now (``ResNetDGMState.sizes``), not the
one each past task ran on; ``allocations`` recovers those by replaying
``end_task``'s growth on the kept embeddings (a deterministic function of
them), and checks the replay against the counts the state recorded.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import hat
from dynamos_jax.methods.dgm import imagenet
from dynamos_jax.methods.dgm import generator_resnet as rg
from dynamos_jax.methods.dgm import growth_resnet

# The ten masked weights in the state's order (FC, then conv1, conv2, shortcut per block).
LAYERS = ("fc1",) + tuple(f"block{b}.{n}" for b in (1, 2, 3) for n in ("conv1", "conv2", "short"))
# The seven channel groups (rg.groups), named by the weight whose outputs they are.
GROUPS = ("fc1", "block1.conv1", "block1.conv2", "block2.conv1", "block2.conv2",
          "block3.conv1", "block3.conv2")


def onehot_width(method) -> int:
  """The noise's one-hot prefix width (``dgm.onehot_dims``, 0: none)."""
  return imagenet.onehot_width(method)


def row(method, state, t: int, l: int) -> dict:
  """``mask_statistics``' extra column: the weight's name."""
  return {"name": LAYERS[l]}


def samples(method, state, classes: int, n: int, base: jax.Array) -> np.ndarray:
  """uint8 [classes, n, 32, 32, 3] from noise ``base`` [n, nz]: ``imagenet.samples``
  (each class by its own head, as the method's after-task reports)."""
  return imagenet.samples(method, state, classes, n, base)


def allocations(method, state, tasks: int) -> np.ndarray:
  """int [tasks + 1, 10, 2]: the allocated (in, out) of each weight while task t trained
  (row t < tasks) and after the growth that followed task tasks - 1 (last row).

  Replays ``imagenet.end_task``'s growth: task t's binary mask is its kept
  embedding binarised over its allocation, the cumulated masks' new ones are
  the growth's input. Raises ValueError where the replay's counts differ from
  the state's (a state grown by another rule).
  """
  sizes = method.spec.start_sizes()
  rows, reserved, cum = [sizes], np.zeros(len(LAYERS), np.int64), None
  g = jax.tree.map(jnp.asarray, state.g)
  counts = np.asarray(state.counts)
  for t in range(tasks):
    ex = imagenet.allocated(g, sizes)
    binary = [np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, x))
              for e, x in zip(state.past_emb, ex)]
    cum = binary if cum is None else [np.maximum(c, b) for c, b in zip(cum, binary)]
    ones = np.asarray([int(c.sum()) for c in cum])
    if method.expansion == "none":
      new_counts = counts[t]
    else:
      sizes, new_counts = growth_resnet.grown_sizes(method.spec, sizes, ones - reserved)
    reserved = ones
    if t + 1 < len(counts) and not np.array_equal(new_counts, counts[t + 1]):
      raise ValueError(f"the growth after task {t} gives counts {new_counts.tolist()}, the "
                       f"state holds {counts[t + 1].tolist()}")
    rows.append(np.asarray(sizes, np.int32))
  return np.stack(rows).astype(np.int32)


def task_exists(method, state, tasks: int, sizes=None) -> list[tuple[np.ndarray, ...]]:
  """Per finished task, float [C_in, C_out, 1, 1] per weight: its allocated entries then
  (the entries its mask, binarised at end_task, covers)."""
  sizes = allocations(method, state, tasks) if sizes is None else sizes
  g = jax.tree.map(jnp.asarray, state.g)
  return [tuple(np.asarray(x) for x in imagenet.allocated(g, sizes[t])) for t in range(tasks)]


def generate(method, state, z: jax.Array, label: int, finished: bool = True,
             binary: bool | None = None) -> jax.Array:
  """Images [N, 32, 32, 3] in [-1, 1] of class ``label`` from noise z [N, nz] (its one-hot
  prefix written): eval BN, s = S, its task's masks (the kept embedding once ``finished``,
  else the one being trained; binarised per ``binary``, None: per ``dgm.past_masks``, as
  the replay), BN and counts, and its own head."""
  u = label // method.classes_per_task
  ex = imagenet.allocated(state.g, state.sizes)
  if binary is None:
    binary = method.past_masks == "binary"
  emb = tuple(e[u] for e in state.past_emb) if finished else state.g["emb"]
  fn = hat.binarise if binary else hat.mask
  masks = tuple(fn(e, method.smax, x) for e, x in zip(emb, ex))
  labels = jnp.full(z.shape[:1], label, jnp.int32)
  return rg.forward(method.spec, state.g, state.g_stats, z, u, masks, state.counts[u], labels,
                    False)[0]


def masked_params(method, state, tasks: int, sizes=None) -> list[int]:
  """[tasks + 1] allocated masked weights (``rg.masked_count``) each task trained on, the
  last after the growth that followed task tasks - 1."""
  sizes = allocations(method, state, tasks) if sizes is None else sizes
  return [rg.masked_count(s) for s in sizes]


def private_params(method, counts) -> int:
  """A task's own parameters at counts [10]: its 7 BN's scale and bias on the active
  channels, and its classes' heads (3x3 conv O_3 -> n_c, with bias)."""
  spec = method.spec
  o3 = int(np.asarray(counts)[8])
  head = o3 * spec.channels * rg.HEAD_KERNEL ** 2 + spec.channels
  bn = 2 * int(sum(int(c) for c in rg.groups(np.asarray(counts))))
  return bn + method.classes_per_task * head


def worst_case_sizes(spec, t: int) -> np.ndarray:
  """int [10, 2] every width at the linear worst case f (1 + t) (nz stays nz)."""
  w = spec.ngf * (1 + t)
  return np.asarray([(spec.nz, w)] + [(w, w)] * 9, np.int32)


def masked_count_worst(spec, t: int) -> int:
  """The masked weights at the linear worst case after t growths (``worst_case_sizes``)."""
  return rg.masked_count(worst_case_sizes(spec, t))


def arrays(method, state, finished: int, sizes=None) -> dict:
  """dgm/plots' arrays: widths [finished + 1, 7] (each task's channel groups, row 0 the start,
  the last after the growth that followed the last finished task), binaries / exists
  [finished][10] bool (each finished task's binary mask over its allocation), and the files'
  weights (the allocation now; each finished task's BN, its classes' heads) and masks cut
  to each task's allocation, by name; the growth curve's names (GROUPS), params and worst
  [finished + 1] (``masked_params``, ``masked_count_worst``), layers (LAYERS), ylabel."""
  sizes = allocations(method, state, finished) if sizes is None else sizes
  counts = np.asarray(state.counts)
  exists = task_exists(method, state, finished, sizes)
  g = state.g
  binaries, cut_exists, weights, masks = [], [], {}, {}
  c = method.classes_per_task
  for t in range(finished):
    binary = [np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, jnp.asarray(x))) > 0
              for e, x in zip(state.past_emb, exists[t])]
    binaries.append(binary)
    cut_exists.append([np.broadcast_to(x > 0, b.shape) for x, b in zip(exists[t], binary)])
    for l, (b, (i, o)) in enumerate(zip(binary, sizes[t])):
      masks[f"task{t}.{LAYERS[l]}"] = b[:i, :o]
    group = rg.groups(counts[t])
    for l, a in enumerate(group):
      weights[f"task{t}.bn{l}.scale"] = np.asarray(g["scale"][l][t][:int(a)])
      weights[f"task{t}.bn{l}.bias"] = np.asarray(g["bias"][l][t][:int(a)])
    for k in range(t * c, (t + 1) * c):
      weights[f"class{k}.head"] = np.asarray(g["head"][k][:int(group[6])])
      weights[f"class{k}.head_bias"] = np.asarray(g["head_bias"][k])
  for l, (w, (i, o)) in enumerate(zip(g["w"], sizes[-1])):
    weights[LAYERS[l]] = np.asarray(w)[:i, :o]
  rows = counts[:min(finished + 1, len(counts))]
  widths = np.asarray([rg.groups(r) for r in rows])
  return {"counts": widths, "binaries": binaries, "exists": cut_exists, "weights": weights,
          "masks": masks, "sizes": sizes, "names": GROUPS, "layers": LAYERS,
          "params": masked_params(method, state, finished, sizes),
          "worst": [masked_count_worst(method.spec, t) for t in range(len(widths))],
          "ylabel": "allocated masked weights"}
