"""SLNI (Aljundi et al., ICLR 2019) and its family on an MLP or VGG11-slim (docs/slni.md).

L = CE + lambda_SSL sum_l R(H_l) + lambda_Omega sum_k Omega_k (theta_k - theta*_k)^2

with R one of the representation regularisers (SNI, SLNI, SNID, SLNID,
L1-Rep, DeCov: ``regularizers.py``) on both hidden layers, or a parameter
regulariser (L2-WD, L1-Param, OrthReg) added to the gradient, or none; an
activation (ReLU, Maxout, LwTA); and the parameter importance Omega of MAS or
EWC (or none) estimated after each task (``importance.py``), which also gives
the neuron importance alpha that discounts SNID and SLNID. SGD with momentum,
its state reset at every task (a new optimiser per task, as the reference).
``slni.selection``: ``last`` keeps the weights after a task's last epoch;
``best_epoch`` those of the epoch with the best accuracy on the task's
validation split (``data.validation``), and the next task starts from them;
``best_test_epoch`` (the reference) selects so on the test set it reports
(docs/slni.md#model-selection). The patiences read the same accuracy.
``slni.lr_patience`` / ``slni.stop_patience`` (the Tiny ImageNet trainer; 0:
off): when a task's accuracy has not improved for lr_patience epochs the
learning rate is multiplied by ``slni.lr_factor`` (again after each further
lr_patience epochs without a gain); after more than stop_patience such epochs
the task stops: its remaining planned steps leave the state as it is (the
plan of steps is fixed, so they still run). The reference's retry of a task
with lambda_Omega halved while its best accuracy stays below 10 % is not
offered (docs/slni.md#learning-rate-patience-and-early-stopping).

``slni.model``: the permuted-MNIST MLP (``methods/slni/mlp.py``) or VGG11-slim
(``methods/slni/vgg.py``, Tiny ImageNet); the regularisers act on the two hidden
Dense layers of either. ``slni.heads=per_task`` (task-incremental benchmarks,
docs/slni.md#heads): one Dense(T * K) output whose K-wide slice t is task
t's head; a step's CE and the importance pass see only the batch's task's
slice, and the step leaves every other head's columns exactly as they are
(the reference holds only head t in the model during task t, so weight decay
or L1 never reach the old heads). Each head starts as a fresh PyTorch-default
head, as the reference attaches one per task. ``slni.init_weights``: the MLP's
hidden layers from an npz of the authors' shipped initial model, the same for
every seed as theirs; the head is still drawn from the seed
(docs/slni.md#initialisation).
"""

import dataclasses
import functools
import os

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dynamos_jax import benchmarks, losses
from dynamos_jax.errors import require
from dynamos_jax.methods.base import Method, register
from dynamos_jax.methods.slni import importance as importance_lib
from dynamos_jax.methods.slni import regularizers as reg
from dynamos_jax.methods.slni import representation as rep
from dynamos_jax.methods.slni.mlp import ACTIVATIONS, MLP, load_hidden
from dynamos_jax.methods.slni.vgg import VGGSlim

REPRESENTATION = ("l1_rep", "decov", "sni", "snid", "slni", "slnid")
PARAMETER = ("l2_wd", "l1_param", "orthreg")
REGULARIZERS = ("no_reg",) + REPRESENTATION + PARAMETER
IMPORTANCES = ("mas", "ewc", "none")
HEADS = ("shared", "per_task")
SELECTIONS = ("last", "best_epoch", "best_test_epoch")
MODELS = ("mlp", "vgg11_slim")


@flax.struct.dataclass
class SLNIState:
  """params: the MLP's; opt_state: SGD-momentum's (reset each task);
  consolidation: Omega, the anchor, alpha (``importance.Consolidation``);
  best, best_accuracy: the task's best epoch so far (``selection`` not ``last``);
  lr_scale: the task's learning-rate factor, since_best: int32 epochs since its
  best, stopped: bool, the task has stopped early (``lr_patience``, ``stop_patience``)."""

  params: dict
  opt_state: tuple
  consolidation: importance_lib.Consolidation
  best: dict
  best_accuracy: jax.Array
  lr_scale: jax.Array
  since_best: jax.Array
  stopped: jax.Array


def _orthreg(beta: float, lam: float) -> optax.GradientTransformation:
  """OrthReg's extra gradient on the hidden layers' unit weight vectors
  (docs/slni.md#parameter-regularisers):
  beta * sum_{j != i} lam e^{lam c_ij} / (e^{lam c_ij} + e^{lam}) w_j, c = cosines."""

  def update(updates, state, params):
    def extra(path, w):
      if not (path[-1].key == "kernel" and path[0].key.startswith(("fc", "conv"))):
        return jnp.zeros_like(w)
      # A convolution's filters as vectors: [3, 3, C_in, C_out] -> [9 C_in, C_out]
      # (the released hook's conv weights); a Dense kernel is already [in, out].
      flat = w.reshape(-1, w.shape[-1])
      unit = flat / (jnp.linalg.norm(flat, axis=0, keepdims=True) + 1e-10)  # columns = units
      c = unit.T @ unit
      coef = lam * jnp.exp(lam * c) / (jnp.exp(lam * c) + jnp.exp(lam))
      coef = coef * (1.0 - jnp.eye(c.shape[0]))
      return (beta * unit @ coef.T).reshape(w.shape)

    return jax.tree.map(jnp.add, updates, jax.tree_util.tree_map_with_path(extra, params)), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _freeze_other_heads(updates: dict, task: jax.Array, k: int, heads: int) -> dict:
  """``updates`` with the head columns of every task but ``task`` zeroed: those
  heads stay exactly fixed (the head kernel is [N, heads * K], head t = columns
  t K .. (t + 1) K - 1)."""
  own = (jnp.arange(heads * k) // k) == task  # [heads * K]
  head = {name: jnp.where(own, u, jnp.zeros_like(u)) for name, u in updates["head"].items()}
  return {**updates, "head": head}


def _l1_param(weight: float) -> optax.GradientTransformation:
  """L1-Param: + weight * sign(theta) on the gradient (the reference's L1 decay)."""
  return optax.GradientTransformation(
    lambda params: optax.EmptyState(),
    lambda g, s, p: (jax.tree.map(lambda g, p: g + weight * jnp.sign(p), g, p), s),
  )


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SLNI(Method):
  """The network and the ``slni.*`` keys under their config names (defaults: ``defaults``)."""

  model: MLP | VGGSlim
  lr: float
  regularizer: str
  importance: str
  lambda_ssl: float
  lambda_omega: float
  sigma_scale: float
  sigma: float
  discount: str
  alpha_mean: bool
  weight_decay: float
  orthreg_beta: float
  orthreg_lambda: float
  momentum: float
  importance_batch: int
  selection: str
  lr_patience: int
  lr_factor: float
  stop_patience: int
  init_weights: str

  name = "slni"
  namespace = "slni"

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.regularizer = "slnid"  # one of REGULARIZERS
    c.model = "mlp"  # mlp (permuted MNIST) | vgg11_slim (Tiny ImageNet, split CIFAR-100)
    c.channels = 64  # vgg11_slim: channels of the first convolution (64: the paper's)
    c.activation = "relu"  # relu | maxout | lwta
    c.block = 2  # units per Maxout / LwTA block
    c.importance = "mas"  # mas | ewc | none (parameter importance Omega)
    c.width = 128  # hidden units N (of the MLP, or of VGG11-slim's two Dense layers: 500)
    c.heads = "shared"  # shared | per_task
    c.lambda_ssl = 1e-3  # weight of the representation regulariser
    c.lambda_omega = 0.1  # weight of the Omega-weighted anchor penalty
    c.sigma_scale = 6.0  # Gaussian locality sigma = N / sigma_scale (the code's tie to width)
    c.sigma = 0.0  # > 0: an absolute sigma instead (the paper's free hyperparameter)
    c.discount = "product"  # product (paper, Eq. 6) | min (the released code)
    c.alpha_mean = False  # alpha across tasks: sum (MNIST demos) or running mean
    c.weight_decay = 0.0  # L2-WD and L1-Param strength
    c.orthreg_beta = 1e-3
    c.orthreg_lambda = 10.0
    c.momentum = 0.9
    c.importance_batch = 200  # batch of the importance pass (reference: 200)
    # last | best_epoch (best validation accuracy per task) | best_test_epoch (the reference's:
    # best test accuracy)
    c.selection = "last"
    c.lr_patience = 0  # epochs without a gain before lr *= lr_factor (0: never)
    c.lr_factor = 0.1
    c.stop_patience = 0  # stop a task after more epochs than this without a gain (0: never)
    # An npz of the authors' initial MLP (reference/slni/export_initial.py): its hidden
    # layers for every seed. "": drawn from the seed.
    c.init_weights = ""
    return c

  @classmethod
  def validate(cls, config) -> None:
    s = config.slni

    for key, choices in (
      ("regularizer", REGULARIZERS),
      ("activation", ACTIVATIONS),
      ("importance", IMPORTANCES),
      ("discount", reg.DISCOUNTS),
      ("heads", HEADS),
      ("selection", SELECTIONS),
      ("model", MODELS),
    ):
      require(s[key] in choices, f"unknown slni.{key} {s[key]!r}: use one of {', '.join(choices)}")
    for key in ("lambda_ssl", "lambda_omega", "weight_decay", "orthreg_beta"):
      require(s[key] >= 0, f"slni.{key} must be >= 0 (got {s[key]})")
    require(
      s.width >= 1 and s.block >= 1 and s.channels >= 1,
      "slni.width, slni.block and slni.channels must be >= 1",
    )
    # Maxout divides the width by the block at each of the two layers.
    divisor = s.block**2 if s.activation == "maxout" else s.block
    require(
      s.activation == "relu" or s.width % divisor == 0,
      f"slni.width={s.width} does not split into {s.activation} blocks of {s.block} "
      f"(needs a multiple of {divisor})",
    )
    require(
      s.sigma > 0 or s.sigma_scale > 0,
      "the Gaussian locality needs sigma > 0: set slni.sigma_scale > 0 (sigma = N / scale) "
      "or slni.sigma > 0",
    )
    require(s.sigma >= 0, f"slni.sigma must be >= 0 (0: use sigma_scale; got {s.sigma})")
    require(s.importance_batch >= 1, "slni.importance_batch must be >= 1")
    require(
      s.lr_patience >= 0 and s.stop_patience >= 0,
      "slni.lr_patience and slni.stop_patience must be >= 0 (0: off)",
    )
    require(0 < s.lr_factor <= 1, f"slni.lr_factor must be in (0, 1] (got {s.lr_factor})")
    require(
      s.selection != "best_epoch" or benchmarks.base.validation_fraction(config) > 0,
      "slni.selection=best_epoch selects on the validation split and this run holds none: "
      "set --config.data.validation=0.1, or knowingly select on the test set with "
      "--config.slni.selection=best_test_epoch (the authors' rule)",
    )
    if s.init_weights:  # Its shapes are checked in from_config, against the benchmark's input.
      require(
        s.model == "mlp",
        f"slni.init_weights holds the authors' permuted-MNIST MLP, not {s.model}: "
        "use it with slni.model=mlp or leave it empty",
      )
      require(
        os.path.isfile(s.init_weights),
        f"slni.init_weights={s.init_weights}: no such file; "
        "make it with reference/slni/export_initial.py",
      )
    kind = benchmarks.REGISTRY[config.dataset].kind
    require(
      s.heads == "shared" or kind == "task-incremental",
      f"slni.heads=per_task needs a task-incremental benchmark (a head per task); "
      f"{config.dataset} is {kind}: use --config.slni.heads=shared",
    )

  @classmethod
  def from_config(cls, config, benchmark) -> "SLNI":
    s = config.slni
    heads = benchmark.num_tasks if s.heads == "per_task" else 1
    if s.model == "vgg11_slim":
      model = VGGSlim(s.width, benchmark.num_classes, heads, s.activation, s.block, s.channels)
    else:
      model = MLP(s.width, benchmark.num_classes, heads, s.activation, s.block)
      if s.init_weights:  # Refuses a file that does not fit before anything trains.
        shapes = jax.eval_shape(model.init, jax.random.key(0), benchmark.example().images)
        load_hidden(s.init_weights, shapes["params"])
    # The fields named as slni.* keys take their values (the model is built from its keys).
    keys = {f.name: s[f.name] for f in dataclasses.fields(cls) if f.name in s}
    return cls(**{**keys, "model": model, "lr": config.lr})

  @property
  def tx(self) -> optax.GradientTransformation:
    """SGD with momentum; the parameter regulariser's gradient added before it."""
    extra = {
      "l2_wd": lambda: optax.add_decayed_weights(self.weight_decay),
      "l1_param": lambda: _l1_param(self.weight_decay),
      "orthreg": lambda: _orthreg(self.orthreg_beta, self.orthreg_lambda),
    }
    first = extra[self.regularizer]() if self.regularizer in extra else optax.identity()
    return optax.chain(first, optax.sgd(self.lr, momentum=self.momentum))

  def _logits(self, params, images, task, probes=None):
    """The logits of ``task``'s head (the shared head: the only one; ``task`` None:
    every head side by side, [M, heads * K]) and the aux."""
    logits, aux = self.model.apply({"params": params}, images, probes)
    k = self.model.num_classes
    if self.model.heads > 1 and task is not None:
      logits = jax.lax.dynamic_slice_in_dim(logits, task * k, k, axis=1)
    return logits, aux

  def init(self, key, example, benchmark):
    params = self.model.init(key, example.images)["params"]
    if self.init_weights:
      # The authors' hidden layers, constants of the compiled init: every seed starts from
      # them; the head keeps its draw from ``key`` (docs/slni.md#initialisation).
      params = {**params, **load_hidden(self.init_weights, params)}
    _, aux = self.model.apply({"params": params}, example.images)
    widths = tuple(h.shape[-1] for h in aux["act"])
    return SLNIState(
      params,
      self.tx.init(params),
      importance_lib.Consolidation.empty(params, widths),
      params,
      jnp.float32(-1.0),
      jnp.float32(1.0),
      jnp.int32(0),
      jnp.bool_(False),
    )

  def _representation(self, act, mask, alpha) -> jax.Array:
    """sum over the hidden layers of R(H_l) (0 without a representation regulariser)."""
    total = jnp.zeros(())
    if self.regularizer not in REPRESENTATION:
      return total
    for h, a in zip(act, alpha):
      n = h.shape[-1]
      if self.regularizer == "l1_rep":
        total += reg.l1_rep(h, mask)
      elif self.regularizer == "decov":
        total += reg.decov(h, mask)
      else:
        local = self.regularizer in ("slni", "slnid")
        weights = reg.locality(n, (self.sigma or n / self.sigma_scale) if local else None)
        if self.regularizer in ("snid", "slnid"):
          weights = weights * reg.discount(a, self.discount)
        total += reg.decorrelation(h, mask, weights)
    return total

  def step(self, state, batch, key, phase):
    del key, phase  # Deterministic; one phase.
    consolidation = state.consolidation

    def loss_fn(params):
      logits, aux = self._logits(params, batch.images, batch.task)
      ce = losses.cross_entropy(logits, batch.labels, batch.mask)
      rep = self._representation(aux["act"], batch.mask, consolidation.alpha)
      anchor = importance_lib.penalty(consolidation, params)
      total = ce + self.lambda_ssl * rep + self.lambda_omega * anchor
      return total, (logits, ce, rep, anchor)

    grads, (logits, ce, rep, anchor) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    if self.model.heads > 1:  # Only the batch's task's head moves.
      updates = _freeze_other_heads(updates, batch.task, self.model.num_classes, self.model.heads)
    # The decayed learning rate scales the step, not the momentum (as PyTorch's SGD); a
    # stopped task's steps change nothing.
    scale = jnp.where(state.stopped, 0.0, state.lr_scale)
    updates = jax.tree.map(lambda u: u * scale, updates)
    opt_state = jax.tree.map(
      lambda new, old: jnp.where(state.stopped, old, new), opt_state, state.opt_state
    )
    params = optax.apply_updates(state.params, updates)
    correct = (jnp.argmax(logits, -1) == batch.labels) & batch.mask
    metrics = {
      "loss": ce + self.lambda_ssl * rep + self.lambda_omega * anchor,
      "ce": ce,
      "representation": rep,
      "anchor": anchor,
      "train_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(batch.mask), 1),
    }
    return state.replace(params=params, opt_state=opt_state), metrics

  def predict(self, state, images, task, phase):
    """Logits of ``task``'s head [M, K]; ``task`` None: every head's, [M, heads * K]
    (one shared head: its logits)."""
    del phase
    return self._logits(state.params, images, task)[0]

  def begin_task(self, state, task):
    """A fresh optimiser per task: the momentum does not carry over (as the reference)."""
    return state.replace(
      opt_state=self.tx.init(state.params),
      best_accuracy=jnp.float32(-1.0),
      lr_scale=jnp.float32(1.0),
      since_best=jnp.int32(0),
      stopped=jnp.bool_(False),
    )

  @property
  def epoch_end(self):
    """The epoch hook runs, on the task's accuracy, with a best-epoch selection or a
    patience."""
    if self.selection == "last" and not (self.lr_patience or self.stop_patience):
      return "none"
    return "accuracy"

  @property
  def epoch_split(self):
    """``best_epoch`` selects on the validation split, so that the test set stays unseen
    (docs/slni.md#model-selection); ``best_test_epoch`` and the patiences alone read the
    test set, as the reference."""
    return "valid" if self.selection == "best_epoch" else "test"

  def end_epoch(self, state, task, accuracy):
    """With a best-epoch selection: keep the weights of the best epoch so far; with the
    patiences: decay the learning rate, stop the task."""
    del task
    if state.stopped:
      return state
    if accuracy > float(state.best_accuracy):
      return state.replace(
        best=state.params if self.selection != "last" else state.best,
        best_accuracy=jnp.float32(accuracy),
        since_best=jnp.int32(0),
      )
    since = int(state.since_best) + 1
    decay = self.lr_patience and since % self.lr_patience == 0
    return state.replace(
      since_best=jnp.int32(since),
      lr_scale=state.lr_scale * (self.lr_factor if decay else 1.0),
      stopped=jnp.bool_(bool(self.stop_patience) and since > self.stop_patience),
    )

  def analyze(self, state, run):
    """Its hidden layers, finally and after each task (``methods/slni/plots.py``)."""
    from dynamos_jax.methods.slni import plots  # matplotlib: only the analyze command

    exp = run.exp
    return {
      "hidden_layers": plots.final_state(exp, state, exp.benchmark.num_tasks, run.out, run.add),
      "hidden_layers_by_task": plots.after_each_task(run.workdir, exp.seed, run.out, run.add),
    }

  def hidden(self, params, images, batch: int = 1000) -> list[np.ndarray]:
    """Per hidden layer, the post-activation values [M, N_l] of ``images`` [M, H, W, C]."""
    parts = [
      _hidden(params, images[s : s + batch], method=self) for s in range(0, images.shape[0], batch)
    ]
    return [np.concatenate([np.asarray(p[l]) for p in parts]) for l in range(len(parts[0]))]

  def after_task(self, state, task, benchmark) -> dict[str, np.ndarray]:
    """What docs/slni.md#hidden-layer-statistics lists after each task: per hidden layer l
    (``l{l}_`` keys of ``representation.layer_report``) on the test images of every task seen
    so far, its neuron importance alpha [N_l]; and Omega's mean and max per parameter array."""
    acts = [self.hidden(state.params, benchmark.task_test_set(s)[0]) for s in range(task.index + 1)]
    out = {}
    for l in range(len(acts[0])):
      report = rep.layer_report([a[l] for a in acts])
      out.update({f"l{l + 1}_{k}": v for k, v in report.items()})
      out[f"l{l + 1}_alpha"] = np.asarray(state.consolidation.alpha[l])
    named = jax.tree_util.tree_flatten_with_path(state.consolidation.omega)[0]
    out["omega_names"] = np.array([jax.tree_util.keystr(p) for p, _ in named])
    out["omega_mean"] = np.array([float(jnp.mean(w)) for _, w in named])
    out["omega_max"] = np.array([float(jnp.max(w)) for _, w in named])
    return out

  def end_task(self, state, task):
    """The selected weights; Omega and alpha of the finished task from a pass over its
    data; the new anchor."""
    if self.selection != "last":
      state = state.replace(params=state.best)
    if self.importance == "none" and self.regularizer not in ("snid", "slnid"):
      return state
    data = task.batches(self.importance_batch)
    kind = "mas" if self.importance == "none" else self.importance  # alpha's objective
    # The task's head (the shared head: the only one), traced: one compilation for
    # every task.
    head = jnp.int32(task.index if self.model.heads > 1 else 0)
    omega, alpha = _estimate(state.params, data, head, method=self, kind=kind)
    if self.model.activation == "maxout":
      # alpha is |dJ/dz| of the N pre-activation units; the regularisers see the N / block
      # Maxout outputs. Per sample only a block's winner passes a gradient, so the
      # block's sum is |dJ/dh| of its output unit.
      alpha = tuple(a.reshape(-1, self.model.block).sum(-1) for a in alpha)
    if self.importance == "none":  # alpha only: no anchor penalty.
      omega = jax.tree.map(jnp.zeros_like, omega)
    return state.replace(
      consolidation=importance_lib.consolidate(
        state.consolidation, omega, alpha, state.params, self.alpha_mean
      )
    )


@functools.partial(jax.jit, static_argnames=("method",))
def _hidden(params, images, *, method: SLNI):
  """The hidden layers' post-activation values of ``images``: a tuple of [M, N_l]."""
  return method.model.apply({"params": params}, images)[1]["act"]


@functools.partial(jax.jit, static_argnames=("method", "kind"))
def _estimate(params, data, task: jax.Array, *, method: SLNI, kind: str):
  """The importance pass of ``method`` over the padded batches ``data`` of ``task``."""

  def forward(p, images, probes):
    logits, aux = method._logits(p, images, task, probes)
    return logits, aux["pre"]

  return importance_lib.estimate(forward, params, data, kind)
