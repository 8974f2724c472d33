"""JT, DGM's upper bound: its discriminator trained as a plain classifier on all real data.

The paper's "JT" row (docs/dgm.md#joint-training-upper-bound): DGM's discriminator
(``methods/dgm/discriminator.py``) with its aux head trained with
cross-entropy on every class's real training images at once (``joint =
True``: the benchmark merges the ten one-class tasks into one, reshuffled
each epoch from the seed, and the run is evaluated once at the end). The
critic head exists (it is the same network) but receives no gradient.

The paper gives no JT hyperparameters and the authors released no JT code
(docs/dgm.md#paper-and-code-differences). Here, by choice: Adam with DGM's D learning rate and betas
(``dgm.lr_d``, ``dgm.beta1``, ``dgm.beta2``), D's width ``dgm.ndf``, the
run's ``batch_size`` and ``epochs``; every forward in training mode (BN batch
statistics, padding rows masked out of them), evaluation with the running
statistics.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dynamos_jax import losses
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.base import Method, register
from dynamos_jax.methods.dgm import config as dgm_config
from dynamos_jax.methods.dgm.discriminator import Discriminator, to_unit


@flax.struct.dataclass
class JointState:
  """params, batch_stats: D's variables; opt_state: Adam's."""

  params: dict
  batch_stats: dict
  opt_state: tuple


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class DGMJoint(Method):
  """D's width and Adam's settings: ``dgm.ndf``, ``dgm.lr_d``, ``dgm.beta1``, ``dgm.beta2``."""

  num_classes: int
  ndf: int
  lr: float
  beta1: float
  beta2: float

  name = "dgm_joint"
  kinds = ("class-incremental",)
  namespace = "dgm"  # shares DGM's keys (declared in methods/dgm/dgm.py): lr_d, beta1, beta2, ndf
  joint = True

  @classmethod
  def defaults(cls):
    return dgm_config.defaults()  # one namespace, whichever of the two the config sees first

  @classmethod
  def validate(cls, config) -> None:
    d = config.dgm
    if not d.lr_d > 0:
      raise ConfigError(f"dgm.lr_d must be > 0 (got {d.lr_d}): JT's Adam learning rate")
    if not (0 <= d.beta1 < 1 and 0 <= d.beta2 < 1):
      raise ConfigError(f"dgm.beta1 and dgm.beta2 must be in [0, 1) (got {d.beta1}, {d.beta2})")
    if d.ndf < 1:
      raise ConfigError(f"dgm.ndf must be >= 1 (got {d.ndf})")
    if dgm_config.generator(config) == "resnet":
      raise ConfigError(
        f"dgm_joint trains the DCGAN discriminator; {config.dataset}'s is the "
        "ResNet-18 one, for which no JT is built: drop :jt"
      )

  @classmethod
  def from_config(cls, config, benchmark) -> "DGMJoint":
    d = config.dgm
    return cls(
      num_classes=benchmark.num_classes, ndf=d.ndf, lr=d.lr_d, beta1=d.beta1, beta2=d.beta2
    )

  @property
  def model(self) -> Discriminator:
    return Discriminator(self.num_classes, self.ndf)

  @property
  def tx(self) -> optax.GradientTransformation:
    return optax.adam(self.lr, b1=self.beta1, b2=self.beta2)

  def init(self, key, example, benchmark):
    del benchmark
    variables = self.model.init(key, to_unit(example.images), train=False)
    params = variables["params"]
    return JointState(params, variables["batch_stats"], self.tx.init(params))

  def step(self, state, batch, key, phase):
    del key, phase  # Deterministic; one phase.
    x = to_unit(batch.images)

    def loss_fn(params):
      (_, logits), updated = self.model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        x,
        train=True,
        mask=batch.mask,
        mutable=["batch_stats"],
      )
      return losses.cross_entropy(logits, batch.labels, batch.mask), (logits, updated)

    (ce, (logits, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = (jnp.argmax(logits, -1) == batch.labels) & batch.mask
    metrics = {
      "loss": ce,
      "ce": ce,
      "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1),
    }
    return state.replace(
      params=params, batch_stats=updated["batch_stats"], opt_state=opt_state
    ), metrics

  def predict(self, state, images, task, phase):
    del task, phase  # One head over every class, all of them trained.
    _, logits = self.model.apply(
      {"params": state.params, "batch_stats": state.batch_stats}, to_unit(images), train=False
    )
    return logits
