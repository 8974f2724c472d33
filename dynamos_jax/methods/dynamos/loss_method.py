"""The loss-style adapter: a method given by the loss of one step on the ResNet.

Dynamos and its baselines share everything but the loss: the reduced ResNet
(with or without agents), plain SGD, an optional reservoir buffer filled
after each update with the pre-update logits and attention, two train-mode
forwards that each update the BatchNorm statistics. ``LossMethod`` is that
shared part; a subclass sets the class attributes and writes ``loss``.
"""

import abc
import dataclasses
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dynamos_jax import losses
from dynamos_jax.data.streams import Batch
from dynamos_jax.errors import ConfigError
from dynamos_jax.methods.base import Method
from dynamos_jax.methods.dynamos import buffer as buffer_lib
from dynamos_jax.methods.dynamos.resnet import ResNet


@flax.struct.dataclass
class LossState:
  """A loss-style method's state.

  params, batch_stats: the network's variables; opt_state: SGD's state;
  buffer: the reservoir (None for buffer-free methods).
  """

  params: Any
  batch_stats: Any
  opt_state: Any
  buffer: buffer_lib.BufferState | None


@flax.struct.dataclass
class StepOutput:
  """Auxiliary output of ``LossMethod.loss``.

  batch_stats: BN running statistics after the step's forward passes.
  metrics: dict of scalars (loss terms, keep ratios, ...).
  logits: [B, K] of the current batch (pre-update), for buffer insertion.
  attention: [B, D] of the current batch, for buffer insertion (D may be 0).
  """

  batch_stats: Any
  metrics: dict[str, jax.Array]
  logits: jax.Array
  attention: jax.Array


@dataclasses.dataclass(frozen=True)
class LossMethod(Method):
  """Base of the loss-style methods.

  Class attributes (what to build around the loss):
    gated: the ResNet has agents (and the evaluation thresholds them).
    buffer: ``none``, ``add_if_correct`` (only correctly classified samples
      are written: the reference's rule) or ``reservoir`` (every sample).
    buffer_optional: a buffer size of 0 is allowed (the method then runs
      without replay).
    replay_draws: independent replay minibatches each step draws.

  Attributes:
    model: the network.
    lr: SGD's learning rate.
    reservoir: the buffer component, or None.
    parallel_passes: the current and replay passes on two devices
      (``train.parallel_passes``; only methods with ``parallel_grads``).
  """

  model: ResNet
  lr: float
  reservoir: buffer_lib.Reservoir | None = None
  parallel_passes: bool = False

  gated: ClassVar[bool] = False
  buffer: ClassVar[str] = "none"
  buffer_optional: ClassVar[bool] = False
  replay_draws: ClassVar[int] = 1

  @classmethod
  def shared(cls, config, benchmark, temperature: float = 0.15) -> dict[str, Any]:
    """The constructor arguments every loss-style method reads from the config."""
    reservoir = None
    if cls.buffer != "none" and config.buffer_size > 0:
      reservoir = buffer_lib.Reservoir(
        config.buffer_size,
        config.minibatch_size,
        cls.replay_draws,
        insert_if_correct=cls.buffer == "add_if_correct",
        only_valid=config.buffer.only_valid,
      )
    # .get: configs saved before the option existed resume with the Flax layers. Only a
    # gated network has agents, so the ungated methods' model is the same either way.
    model = ResNet(
      num_classes=benchmark.num_classes,
      gated=cls.gated,
      nf=config.model.nf,
      temperature=temperature,
      reduction=config.model.mlp_reduction,
      agent_moments=cls.gated and bool(config.model.get("agent_moments", False)),
    )
    return dict(
      model=model,
      lr=config.lr,
      reservoir=reservoir,
      parallel_passes=bool(config.train.get("parallel_passes", False)),
    )

  @classmethod
  def from_config(cls, config, benchmark) -> "LossMethod":
    return cls(**cls.shared(config, benchmark))

  @classmethod
  def validate(cls, config) -> None:
    if config.train.get("parallel_passes", False):
      if cls.parallel_grads is LossMethod.parallel_grads:
        raise ConfigError(
          f"train.parallel_passes is implemented for dynamos only, not "
          f"{cls.name}: set --config.train.parallel_passes=False"
        )
      if config.batch_size != config.minibatch_size:
        raise ConfigError(
          "train.parallel_passes stacks the current and replay batches: set "
          f"batch_size = minibatch_size (got {config.batch_size} and "
          f"{config.minibatch_size}) or train.parallel_passes=False"
        )
      if str(config.get("sweep", "")).strip():
        raise ConfigError(
          "train.parallel_passes runs one seed's passes on two devices, not a "
          "sweep's members: set train.parallel_passes=False"
        )
      if len(str(config.seeds).split(",")) > 1:
        raise ConfigError(
          "train.parallel_passes runs one seed's passes on two devices; "
          "several seeds already share the cores (train.host_devices): "
          "set train.parallel_passes=False"
        )
    if cls.buffer != "none" and not cls.buffer_optional and config.buffer_size < 1:
      raise ConfigError(
        f"method {cls.name} replays from a buffer: set --config.buffer_size "
        ">= 1 (or use --config.method=sgd for no buffer)"
      )

  @property
  def tx(self) -> optax.GradientTransformation:
    return optax.sgd(self.lr)

  @abc.abstractmethod
  def loss(
    self,
    params,
    batch_stats,
    batch: Batch,
    replays: tuple[tuple[buffer_lib.Replay, jax.Array], ...],
    key: jax.Array,
  ) -> tuple[jax.Array, StepOutput]:
    """The step's loss, differentiable w.r.t. ``params``.

    Args:
      params, batch_stats: the network's variables.
      batch: the current batch.
      replays: ``replay_draws`` pairs (replay minibatch, bool [B_M] mask of its
        real rows), drawn independently; empty without a buffer.
      key: PRNG key for this step's stochastic gates.
    """

  def parallel_grads(
    self, params, batch_stats, batch: Batch, replays, key: jax.Array
  ) -> tuple[Any, StepOutput]:
    """``jax.grad`` of ``loss`` with its two passes on two devices (two_pass.py)."""
    raise NotImplementedError(f"{self.name} has no two-device step")

  def init(self, key, example: Batch, benchmark) -> LossState:
    """PyTorch-style initialisation, an empty buffer."""
    del benchmark
    init_key, gates_key = jax.random.split(key)
    variables = self.model.init(
      {"params": init_key, "gates": gates_key},
      example.images,
      "sample" if self.gated else "off",
      True,
    )
    buffer = None
    if self.reservoir is not None:
      buffer = self.reservoir.init(
        example.images.shape[1:], self.model.num_classes, self.model.attention_dim
      )
    return LossState(
      params=variables["params"],
      batch_stats=variables["batch_stats"],
      opt_state=self.tx.init(variables["params"]),
      buffer=buffer,
    )

  def step(self, state: LossState, batch: Batch, key, phase: str):
    """One SGD step on ``loss``; then reservoir insertion of the batch.

    The phase ``warmup`` (declared by methods that have one) trains the
    agent-free network with cross-entropy and leaves the buffer alone.
    """
    gates_key, replay_key, reservoir_key = jax.random.split(key, 3)
    use_buffer = phase != "warmup" and self.reservoir is not None
    if phase == "warmup":
      loss_fn = lambda p: plain_cross_entropy(self.model, p, state.batch_stats, batch)
    else:
      replays = self.reservoir.sample(state.buffer, replay_key) if use_buffer else ()
      loss_fn = lambda p: self.loss(p, state.batch_stats, batch, replays, gates_key)
    if phase != "warmup" and self.parallel_passes and replays:
      grads, out = self.parallel_grads(state.params, state.batch_stats, batch, replays, gates_key)
    else:
      grads, out = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    new_buffer = state.buffer
    if use_buffer:
      # Insert after the update, with the logits and attention of the
      # pre-update forward (docs/dynamos.md#replay-buffer).
      new_buffer = self.reservoir.insert(
        state.buffer,
        reservoir_key,
        batch.images,
        batch.labels,
        jax.lax.stop_gradient(out.logits),
        jax.lax.stop_gradient(out.attention),
        batch.mask,
      )
    metrics = dict(out.metrics, grad_norm=optax.tree.norm(grads))
    if self.reservoir is not None:
      metrics["buffer_seen"] = new_buffer.num_seen
    return state.replace(
      params=params, batch_stats=out.batch_stats, opt_state=opt_state, buffer=new_buffer
    ), metrics

  def predict(self, state: LossState, images, task, phase: str):
    """Eval-mode logits; agents thresholded, or off during a warm-up (as trained)."""
    del task  # One head over every class.
    mode = "threshold" if self.gated and phase != "warmup" else "off"
    logits, _ = self.model.apply(
      {"params": state.params, "batch_stats": state.batch_stats}, images, mode, False
    )
    return logits

  def analyze(self, state: LossState, run) -> dict:
    """A gated network's Figs. 3-7 and keep ratios (``gate_analysis``); nothing else for
    the agent-free methods."""
    if not self.gated:
      return {}
    from dynamos_jax.methods.dynamos import gate_analysis  # matplotlib: only analyze

    return gate_analysis.gate_analyses(state, run)


def forward(
  model,
  params,
  batch_stats,
  images: jax.Array,
  mask: jax.Array,
  mode: str = "off",
  key: jax.Array | None = None,
):
  """A train-mode forward over the real rows ``mask`` [B] of ``images``.

  Returns ``(logits [B, K], aux, batch_stats)``: BN normalises with, and
  updates its running statistics from, the real rows only. With no real row
  (a replay draw from an empty buffer) statistics over zero samples would be
  NaN, so the forward normalises over all (zero) rows and the statistics are
  left as they were; the masked loss terms are zero anyway.
  """
  has_rows = jnp.any(mask)
  rngs = {"gates": key} if key is not None else None
  (logits, aux), updates = model.apply(
    {"params": params, "batch_stats": batch_stats},
    images,
    mode,
    True,
    jnp.where(has_rows, mask, True),
    rngs=rngs,
    mutable=["batch_stats"],
  )
  stats = jax.tree.map(
    lambda new, old: jnp.where(has_rows, new, old), updates["batch_stats"], batch_stats
  )
  return logits, aux, stats


def accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Fraction of the real rows classified correctly."""
  correct = (jnp.argmax(logits, -1) == labels) & mask
  return jnp.sum(correct) / jnp.maximum(jnp.sum(mask), 1)


def no_attention(batch: Batch) -> jax.Array:
  """[B, 0]: agent-free methods store no attention vectors."""
  return jnp.zeros((batch.labels.shape[0], 0), jnp.float32)


def plain_cross_entropy(model, params, batch_stats, batch: Batch):
  """Cross-entropy of an agent-free, train-mode forward (SGD, and Dynamos' warm-up)."""
  logits, _, stats = forward(model, params, batch_stats, batch.images, batch.mask)
  ce = losses.cross_entropy(logits, batch.labels, batch.mask)
  metrics = {"loss": ce, "ce": ce, "train_accuracy": accuracy(logits, batch.labels, batch.mask)}
  return ce, StepOutput(stats, metrics, logits, no_attention(batch))
