"""A toy method: the worked example of docs/design.md#adding-a-method.

A linear softmax classifier on the raw pixels, plus a ReLU hidden layer that
gains ``grow`` units at every task end (none with ``grow=0``). It carries
state across tasks: at the end of a task it keeps a copy of its weights (the
anchor), and from then on the loss pulls the weights towards it with weight
``pull``. It is one file: importing it registers ``--config.method=anchored``
and the config keys ``anchored.*``.
"""

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from dynamos_jax import losses
from dynamos_jax.errors import require
from dynamos_jax.methods import Method, register


@flax.struct.dataclass
class AnchoredState:
  """params: {"w": [F, K], "b": [K], "u": [F, H], "v": [H, K]} with H = grow x
  tasks ended; anchor: the params at the last task end (same shapes);
  tasks_done: int32 []; task: int32 [] the task begin_task announced;
  steps: int32 [] steps taken; grow_key: uint32 [2] raw key of new units."""

  params: dict
  anchor: dict
  tasks_done: jax.Array
  task: jax.Array
  steps: jax.Array
  grow_key: jax.Array


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Anchored(Method):
  num_classes: int
  lr: float  # the anchored.* keys: their values live in defaults()
  pull: float
  grow: int

  name = "anchored"
  namespace = "anchored"

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"lr": 0.1, "pull": 1.0, "grow": 0})

  @classmethod
  def validate(cls, config) -> None:
    require(config.anchored.pull >= 0, f"anchored.pull must be >= 0 (got {config.anchored.pull})")

  @classmethod
  def from_config(cls, config, benchmark) -> "Anchored":
    return cls(num_classes=benchmark.num_classes, **config.anchored)

  def init(self, key, example, benchmark):
    del benchmark
    features = math.prod(example.images.shape[1:])
    w_key, grow_key = jax.random.split(key)
    params = {
      "w": 0.01 * jax.random.normal(w_key, (features, self.num_classes)),
      "b": jnp.zeros((self.num_classes,)),
      "u": jnp.zeros((features, 0)),
      "v": jnp.zeros((0, self.num_classes)),
    }
    zero = jnp.zeros((), jnp.int32)
    return AnchoredState(params, params, zero, zero, zero, jax.random.key_data(grow_key))

  def _logits(self, params, images):
    x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
    return x @ params["w"] + params["b"] + jax.nn.relu(x @ params["u"]) @ params["v"]

  def step(self, state, batch, key, phase):
    del key, phase  # Deterministic; one phase.

    def loss_fn(params):
      logits = self._logits(params, batch.images)
      ce = losses.cross_entropy(logits, batch.labels, batch.mask)
      drift = sum(
        jnp.sum((p - a) ** 2)
        for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(state.anchor))
      )
      # No anchor before the first task ends.
      total = ce + self.pull * jnp.where(state.tasks_done > 0, drift, 0.0)
      return total, (logits, ce, drift)

    grads, (logits, ce, drift) = jax.grad(loss_fn, has_aux=True)(state.params)
    params = jax.tree.map(lambda p, g: p - self.lr * g, state.params, grads)
    correct = (jnp.argmax(logits, -1) == batch.labels) & batch.mask
    metrics = {
      "loss": ce + self.pull * drift * (state.tasks_done > 0),
      "ce": ce,
      "drift": drift,
      "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1),
      # 1 when the batch carries the task that begin_task announced.
      "task_matches": (batch.task == state.task).astype(jnp.float32),
    }
    return state.replace(params=params, steps=state.steps + 1), metrics

  def predict(self, state, images, task, phase):
    del task, phase  # One head, one phase.
    return self._logits(state.params, images)

  def begin_task(self, state, task):
    return state.replace(task=jnp.int32(task.index))

  def end_task(self, state, task):
    """Keeps the weights as the anchor; with ``grow``, adds hidden units (new shapes)."""
    params = state.params
    if self.grow:
      key = jax.random.fold_in(jax.random.wrap_key_data(state.grow_key), task.index)
      features = params["w"].shape[0]
      new_u = 0.01 * jax.random.normal(key, (features, self.grow))
      params = dict(
        params,
        u=jnp.concatenate([params["u"], new_u], axis=1),
        v=jnp.concatenate([params["v"], jnp.zeros((self.grow, self.num_classes))]),
      )
    return state.replace(params=params, anchor=params, tasks_done=state.tasks_done + 1)

  def analyze(self, state, run):
    """analyze's numbers of a toy run: how far the weights sit from the anchor."""
    del run
    drift = sum(
      float(jnp.sum((p - a) ** 2))
      for p, a in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.anchor))
    )
    return {"anchor_drift": drift, "hidden_units": int(state.params["u"].shape[1])}
