"""``summary``'s pieces for the DCGAN generator (the one-class splits; dgm-spec 16).

The same functions as ``summary_resnet``'s, with the DCGAN G's shapes
(``methods/dgm/generator_dcgan.py``): three masked convolutions (``LAYERS``), a
task's masks over the channels it was active on (``state.counts[t]``), a BN
and an output head per task (one class a task: class t is task t's).
"""

import jax
import jax.numpy as jnp
import numpy as np

from dynamos_jax.methods.dgm import hat
from dynamos_jax.methods.dgm import dcgan
from dynamos_jax.methods.dgm import generator_dcgan as gen

LAYERS = ("conv1", "conv2", "conv3")


def onehot_width(method) -> int:
  """The noise's one-hot prefix width (0: none)."""
  return method.num_classes if method.onehot else 0


def task_exists(method, state, tasks: int) -> list[tuple]:
  """Per finished task, per layer, 1 on the entries of its active channels."""
  g = jax.tree.map(jnp.asarray, state.g)
  return [dcgan.mask_exists(method, g, state.counts[t]) for t in range(tasks)]


def generate(method, state, z: jax.Array, label: int, finished: bool = True,
             binary: bool | None = None) -> jax.Array:
  """Images [N, 32, 32, C] of class (= task) ``label``: its counts, BN and head, its masks
  (soft sigmoid(S e) as the replay, or binarised if ``binary``)."""
  counts = state.counts[label]
  exists = dcgan.mask_exists(method, state.g, counts)
  emb = tuple(e[label] for e in state.past_emb) if finished else state.g["emb"]
  if binary:
    masks = tuple(hat.binarise(e, method.smax, x) for e, x in zip(emb, exists))
  else:
    masks = method._masks(emb, method.smax, exists)
  return gen.forward(method.spec, state.g, state.g_stats, z, label, masks, counts, False)[0]


def samples(method, state, classes: int, n: int, base: jax.Array) -> np.ndarray:
  """uint8 [classes, n, 32, 32, C]: ``generate`` of each class from noise ``base`` [n, nz],
  its one-hot prefix set to the class; pixels round(127.5 (x + 1))."""
  rows = []
  for c in range(classes):
    z = base
    if method.onehot:
      z = z.at[:, :method.num_classes].set(jax.nn.one_hot(jnp.full((n,), c), method.num_classes))
    images = np.asarray(generate(method, state, z, c), np.float32)
    rows.append(np.clip(np.round(127.5 * (images + 1.0)), 0, 255).astype(np.uint8))
  return np.stack(rows)


def masked_params(method, state, tasks: int) -> list[int]:
  """[tasks + 1] conv1-3 weights at each task's counts, the last after the growth that
  followed task tasks - 1."""
  return [gen.masked_count(method.spec, np.asarray(state.counts[t])) for t in range(tasks + 1)]


def private_params(method, counts) -> int:
  """A task's own parameters at ``counts``: its BN's and its head's."""
  return sum(gen.private_count(method.spec, np.asarray(counts)))


def row(method, state, t: int, l: int) -> dict:
  """``mask_statistics``' extra column: the layer's channels while task t trained."""
  return {"channels": int(np.asarray(state.counts[t])[l])}


def arrays(method, state, finished: int) -> dict:
  """dgm/plots' arrays (``summary.arrays``): counts [finished + 1, 3] (each task's
  active channels, the last row after the growth that followed the last finished task),
  binaries / exists [finished][3] bool, the files' weights (G now on its active entries,
  each task's head and BN) and masks cut to each task's channels, by name; names and
  layers (LAYERS), params and worst [finished + 1] (the growth curve and its linear worst
  case), ylabel."""
  spec = method.spec
  counts = np.asarray(state.counts)
  g = jax.tree.map(jnp.asarray, state.g)
  binaries, exists, weights, masks = [], [], {}, {}
  for t in range(finished):
    exist = dcgan.mask_exists(method, g, counts[t])
    binary = [np.asarray(hat.binarise(jnp.asarray(e[t]), method.smax, jnp.asarray(x))) > 0
              for e, x in zip(state.past_emb, exist)]
    binaries.append(binary)
    exists.append([np.broadcast_to(np.asarray(x) > 0, b.shape) for x, b in zip(exist, binary)])
    inputs, c = spec.inputs(counts[t]), counts[t]
    for l, b in enumerate(binary):
      masks[f"task{t}.{LAYERS[l]}"] = (b[:inputs[l], :int(c[l])] if spec.variant == "w"
                                       else b[:int(c[l])])
    weights[f"task{t}.head"] = np.asarray(g["head"][t][:int(c[2])])
    for l in range(3):
      weights[f"task{t}.bn{l + 1}.scale"] = np.asarray(g["scale"][l][t][:int(c[l])])
      weights[f"task{t}.bn{l + 1}.bias"] = np.asarray(g["bias"][l][t][:int(c[l])])
  # G now: the widths after the growth that followed the last finished task.
  rows = counts[:min(finished + 1, len(counts))]
  inputs = spec.inputs(rows[-1])
  for l, w in enumerate(g["w"]):
    weights[LAYERS[l]] = np.asarray(w)[:inputs[l], :int(rows[-1][l])]
  worst = rows[0][None, :] * (1 + np.arange(len(rows)))[:, None]
  return {"counts": rows, "binaries": binaries, "exists": exists, "weights": weights,
          "masks": masks, "names": LAYERS, "layers": LAYERS, "ylabel": "conv1-3 weights",
          "params": [gen.masked_count(spec, r) for r in rows],
          "worst": [gen.masked_count(spec, r) for r in worst]}
