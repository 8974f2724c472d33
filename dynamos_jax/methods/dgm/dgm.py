"""DGM (Dynamic Generative Memory; Ostapenko et al., CVPR 2019): DGMw and DGMa (docs/dgm.md).

An AC-GAN learns the classes one task at a time: the discriminator D
(``methods/dgm/discriminator.py``) is also the classifier (its aux head); the
generator G (``methods/dgm/generator_dcgan.py``) is the only memory. G's three
masked transposed convolutions carry HAT-style attention masks per task
(``hat.py``): DGMw masks every weight, DGMa every output channel. After each
task the masks are binarised at s_max and cumulated, the weights they reserve
are frozen for later tasks (gradient conditioning), and G grows so that the
next task finds as many free weights (units) as the first one did
(docs/dgm.md#growth-after-each-task).

One step (docs/dgm.md#training-loop, docs/dgm.md#one-program-per-task), for a
real batch of task t (class t) at scale s of the schedule
(docs/dgm.md#scale-schedule, from the step counter: epoch e = k // batches,
position j = k % batches):
  1. t + 1 Adam steps on D's aux cross-entropy (``lax.scan``), over the real
     batch and, for every past class c < t, the replay images at the same
     indices of the task's fixed order, shuffled together and cut into t + 1
     chunks of the batch's size (unseen classes' logits at -inf);
  2. one Adam step on D with WGAN-GP: mean c(fake) - mean c(real) + lambda_GP
     mean (|grad_xhat c(xhat)| - 1)^2 (a nested ``jax.grad``, D in training mode);
  3. one Adam step on G: -lambda_adv mean c(G_t(z, s)) + lambda_RU alpha R^t
     [+ CE(aux(fake), t) with ``aux_g``]; gradients conditioned by 1 - M^{<t}
     (DGMa: HAT's min rule), the embeddings' gradient compensated
     (docs/dgm.md#embedding-gradient-compensation),
     clipped at norm 1e4; frozen entries restored after the update.
D's BN statistics follow every training-mode forward in that order.

State: ``dgm/state.DGMState``.

Choices and deviations (docs/dgm.md#paper-and-code-differences says them for users):
- Replay (docs/dgm.md#replay): not stored, generated inside the step from the
  task-start snapshot of G (``replay``).
- Growth happens after every task, the last one included; each seed grows by
  its own masks, and arrays are padded to a common shape (multiples of
  ``dgm.shape_multiple``) with existence masks (``shapes``;
  docs/dgm.md#shapes-and-existence-masks).
- D's aux head has all K outputs, unseen ones masked
  (docs/dgm.md#aux-head-over-all-classes); at t = 0
  its CE is identically 0 (one seen class), as the reference's.
- The paper's schedule (``dgm.schedule=paper``): eqs. 3-4, reaching s_max.
- ``dgm.loops``: the t + 1 CE chunks and the replay classes are scanned (one
  compiled body), unrolled on a CPU with YNNPACK's convolutions (XLA:CPU runs
  their gradients in a rolled loop on a slow path; ``cpu_kernels``).
- ``dgm.selection=best_valid``: the reference's "best validation" report,
  recorded beside the final model's accuracies (D not reverted;
  ``selection``).
- For a user (docs/dgm.md#what-a-run-reports), in ``summary``: ``generate``
  (a class's images at s = S, soft or binarised masks), ``mask_statistics``
  (per task and layer: reserved, new, reused, free), ``generator_size``
  (Table 3/4's parameters and bytes).
- What depends on G's family is one class per family behind one protocol
  (``family.GeneratorFamily``; ``DGM.family`` picks it by ``dgm.generator``):
  ``dcgan.DCGANFamily`` (one class a task, the DCGAN G and D) and
  ``imagenet.ResNetFamily`` (ten classes a task, ImageNet-50: the ResNet G
  with per-class heads and the ResNet-18 D; ``imagenet``'s docstring has
  the labels, replay, growth and options that differ). The step and the
  summaries call a family's protocol members only.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dynamos_jax import conv, cpu_kernels, losses
from dynamos_jax.methods.base import Method, register
from dynamos_jax.methods.dgm import classifier_steps, hat, summary
from dynamos_jax.methods.dgm import config as dgm_config
from dynamos_jax.methods.dgm import generator_dcgan as gen
from dynamos_jax.methods.dgm import generator_resnet as rg
from dynamos_jax.methods.dgm import imagenet as dgm_imagenet
from dynamos_jax.methods.dgm import selection as dgm_selection
from dynamos_jax.methods.dgm import statistics as d_statistics
from dynamos_jax.methods.dgm.dcgan import DCGANFamily
from dynamos_jax.methods.dgm.discriminator import Discriminator, ResNetDiscriminator, to_unit
from dynamos_jax.methods.dgm.family import GeneratorFamily
from dynamos_jax.methods.dgm.state import DGMState

# fold_in constants of the named keys (docs/dgm.md#random-keys: never reuse a key).
# 3 and 4 (BN, GROW) are shapes', 5 (REPLAY) replay's, 6 (AUX) imagenet's, 7 (STATS)
# statistics'.
_D_INIT, _HEAD = 1, 2
# Per step: the step's key split into these consumers.
_STEP_KEYS = ("perm", "z_d", "gp", "z_g")


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class DGM(Method):
  """The DGM method (see the module docstring); fields are set by ``from_config``."""

  # dgm.* keys, under their config names (defaults and meaning: methods/dgm/config.py).
  smax: float
  lambda_ru: float
  lambda_gp: float
  lambda_adv: float
  aux_g: bool
  reinit_d: bool
  lr_d: float
  lr_g: float
  beta1: float
  beta2: float
  ndf: int
  onehot: bool
  schedule: str
  expansion: str
  shape_multiple: int
  thres_cosh: float
  clip_norm: float
  replay: str
  selection: str
  eval_every: int
  past_masks: str  # the ImageNet code's options (ten classes a task)
  aux_head: str
  g_noise: str
  onehot_dims: int  # 0: K
  d_blocks: int  # the ResNet D's blocks per stage (2: ResNet-18)
  # Defaults: runs saved before these options existed resume with the authors' behaviour.
  d_statistics: str = "running"  # D's BN statistics when evaluated (``statistics``)
  statistics_images: int = 1000
  # Derived from the config and the benchmark.
  spec: gen.GeneratorSpec | rg.ResNetGeneratorSpec
  num_classes: int
  epochs: int
  batch_size: int
  unroll: bool  # dgm.loops resolved for the backend
  max_steps: int  # train.max_steps_per_task (0: none): when a task's last epoch ends
  eval_batch_size: int
  classes_per_task: int
  generator: str  # the G family: dcgan | resnet
  replay_slots: int  # resnet: the largest task's size (its replay sets' static size)
  # The seed's benchmark, for best_valid's evaluations (its hold-out is the seed's).
  data: dgm_selection.Data | None = dataclasses.field(default=None, repr=False)

  name = "dgm"
  kinds = ("class-incremental",)  # one class (or ten, ImageNet-50) a task, a head per class
  namespace = "dgm"

  @classmethod
  def defaults(cls) -> ml_collections.ConfigDict:
    return dgm_config.defaults()

  @classmethod
  def validate(cls, config) -> None:
    dgm_config.validate(config)

  @classmethod
  def from_config(cls, config, benchmark) -> "DGM":
    d = config.dgm
    channels = benchmark.image_shape[-1]
    family = dgm_config.generator(config)
    c = getattr(benchmark, "classes_per_task", 1)
    if family == "resnet":
      spec = rg.ResNetGeneratorSpec(d.ngf, d.nz, channels, benchmark.num_tasks, c)
    else:
      spec = gen.GeneratorSpec(
        d.variant,
        d.ngf,
        d.nz,
        channels,
        benchmark.num_tasks,
        d.mask_placement,
        # .get: runs saved before the option existed resume with the default.
        conv.resolve(d.get("conv", "auto")),
      )
    # The fields named as dgm.* keys take their values; the derived ones are set here.
    keys = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
    derived = dict(
      spec=spec,
      num_classes=benchmark.num_classes,
      epochs=config.epochs,
      batch_size=config.batch_size,
      unroll=d.loops == "unroll" or (d.loops == "auto" and cpu_kernels.rolled_loops_slow()),
      max_steps=config.train.max_steps_per_task,
      eval_batch_size=config.train.eval_batch_size,
      classes_per_task=c,
      generator=family,
      replay_slots=max(benchmark.task_data(i).size for i in range(benchmark.num_tasks))
      if family == "resnet"
      else 0,
      data=dgm_selection.Data(benchmark),
    )
    return cls(
      **{
        **keys,
        "smax": float(d.smax),
        "aux_g": bool(d.aux_g),
        "reinit_d": bool(d.reinit_d),
        "onehot": bool(d.onehot),
        **derived,
      }
    )

  # --- pieces --------------------------------------------------------------------------------

  @property
  def resnet(self) -> bool:
    return self.generator == "resnet"

  @property
  def family(self) -> GeneratorFamily:
    """G's family (``family``), holding this method: the ResNet G's or the DCGAN G's."""
    return (dgm_imagenet.ResNetFamily if self.resnet else DCGANFamily)(self)

  @property
  def discriminator(self) -> Discriminator | ResNetDiscriminator:
    return self.family.discriminator()

  @property
  def tx_d(self) -> optax.GradientTransformation:
    return optax.adam(self.lr_d, b1=self.beta1, b2=self.beta2)

  @property
  def tx_g(self) -> optax.GradientTransformation:
    return optax.chain(
      optax.clip_by_global_norm(self.clip_norm), optax.adam(self.lr_g, b1=self.beta1, b2=self.beta2)
    )

  def _key(self, state, name: int, task) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.key), name), task)

  def _d_apply(self, params, stats, x, train: bool, mask=None):
    """D on x [N, 32, 32, C] in [-1, 1]: (critic [N], logits [N, K], batch_stats)."""
    variables = {"params": params, "batch_stats": stats}
    if not train:
      critic, logits = self.discriminator.apply(variables, x, train=False)
      return critic, logits, stats
    (critic, logits), updated = self.discriminator.apply(
      variables, x, train=True, mask=mask, mutable=["batch_stats"]
    )
    return critic, logits, updated["batch_stats"]

  def _masks(self, embeddings, s, exists):
    return tuple(hat.mask(e, s, x) for e, x in zip(embeddings, exists))

  def _seen_logits(self, logits, t):
    """Logits [..., K] with the classes of tasks after t at -inf (tasks 0..t hold classes
    0 .. C (t + 1) - 1)."""
    seen = jnp.arange(logits.shape[-1]) < (t + 1) * self.classes_per_task
    return jnp.where(seen, logits, -jnp.inf)

  # --- lifecycle -----------------------------------------------------------------------------

  def init(self, key, example, benchmark) -> DGMState:
    del example, benchmark
    return self.family.init(key)

  def fresh_fields(self, g, g_stats, counts, variables, key) -> dict:
    """The fields a fresh state of either G family shares: G, D ({params, batch_stats}),
    their Adam states, empty masks and records, ``counts`` [layers] at every task."""
    t = self.spec.num_tasks
    zeros = jnp.zeros((), jnp.int32)
    return dict(
      g=g,
      g_stats=g_stats,
      d=variables["params"],
      d_stats=variables["batch_stats"],
      g_opt=self.tx_g.init(g),
      d_opt=self.tx_d.init(variables["params"]),
      past_emb=tuple(jnp.zeros((t, *e.shape)) for e in g["emb"]),
      cum=tuple(jnp.zeros(e.shape) for e in g["emb"]),
      counts=jnp.tile(jnp.asarray(counts)[None], (t + 1, 1)),
      reserved=jnp.zeros((len(g["w"]),), jnp.int32),
      snapshot=g["w"],
      seen=jnp.zeros((1,), jnp.int32),
      samples=zeros,
      batches=zeros + 1,
      step_in_task=zeros,
      key=jax.random.key_data(key),
      selection=dgm_selection.empty(self.selection, t, self.num_classes),
      eval_stats=d_statistics.empty(self.d_statistics, variables["batch_stats"]),
    )

  def begin_task(self, state, task):
    """D re-initialised (t > 0), task t's head drawn, fresh Adam states, the replay's snapshot."""
    state = jax.tree.map(jnp.asarray, state)  # a multi-seed run hands hooks host arrays
    t = task.index
    # The head's active rows are a shape: read on the host, static in the program.
    counts = tuple(int(c) for c in np.asarray(state.counts[t]))
    # D's fresh variables drawn op by op, as they always were: traced with the rest, XLA
    # would fuse the draws' scale and shift and move them by an ulp. D's shapes do not
    # change between tasks, so these ops compile once.
    fresh = self.family.init_d(self._key(state, _D_INIT, t)) if t > 0 else None
    return _begun(state, fresh, jnp.int32(task.size), method=self, t=t, counts=counts)

  def step(self, state, batch, key, phase):
    del phase  # One phase.
    t = state.seen.shape[0] - 1  # static: the state's shapes change with the task
    keys = dict(zip(_STEP_KEYS, jax.random.split(key, len(_STEP_KEYS))))
    k = state.step_in_task
    epoch, position = k // state.batches, k % state.batches
    if self.schedule == "imagenet":
      s, s_e = dgm_imagenet.scale(
        epoch, position, self.epochs, state.samples, self.batch_size, self.smax
      )
    else:
      s, s_e = hat.scale(
        self.schedule,
        epoch,
        position,
        self.epochs,
        state.batches,
        state.samples,
        self.batch_size,
        self.smax,
        self.spec.variant == "w",
      )
    valid = batch.mask
    n = jnp.maximum(jnp.sum(valid), 1)
    real = to_unit(batch.images)
    b = real.shape[0]
    family = self.family
    replay = replay_labels = replay_valid = None
    if t > 0:
      replay, replay_labels, replay_valid = family.replay(state, position, b, t)

    # 1. The classifier: t + 1 CE steps on real + replay.
    (d, d_stats, d_opt), ce, accuracy = classifier_steps.ce_chunks(
      self, state, keys["perm"], real, batch.labels, valid, replay, t, replay_labels, replay_valid
    )

    # 2. WGAN-GP on D: real vs G_t's fakes (G in training mode: its BN_t moves); with ten
    # classes a task the fakes carry the real batch's labels (the code's).
    g, counts = state.g, state.counts[t]
    exists = family.exists(g, state, t)
    z_d = family.noise(keys["z_d"], batch.labels, t)
    masks = self._masks(g["emb"], s, exists)
    fake, g_stats = family.forward(
      g, state.g_stats, z_d, t, masks, counts, batch.labels, True, valid
    )
    fake = jax.lax.stop_gradient(fake)
    alpha = jax.random.uniform(keys["gp"], (b, 1, 1, 1))
    mixed = alpha * real + (1.0 - alpha) * fake
    vmean = lambda v: jnp.sum(v * valid) / n

    def d_loss_fn(params):
      c_real, _, st = self._d_apply(params, d_stats, real, True, valid)
      c_fake, _, st = self._d_apply(params, st, fake, True, valid)

      def critic_sum(xh):
        c, _, new = self._d_apply(params, st, xh, True, valid)
        return jnp.sum(c * valid), new

      grad_x, st = jax.grad(critic_sum, has_aux=True)(mixed)
      # Padding rows have a zero gradient: keep sqrt's derivative at 0 out of the sum.
      sq = jnp.sum(grad_x**2, axis=(1, 2, 3))
      norm = jnp.where(valid, jnp.sqrt(jnp.where(valid, sq, 1.0)), 0.0)
      gp = vmean((norm - 1.0) ** 2)
      w_dist = vmean(c_real) - vmean(c_fake)
      return -w_dist + self.lambda_gp * gp, (st, gp, w_dist)

    (d_loss, (d_stats, gp, w_dist)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d)
    updates, d_opt = self.tx_d.update(grads, d_opt, d)
    d = optax.apply_updates(d, updates)

    # 3. G: fool the critic; sparse masks on the free entries.
    cond = family.conditioners(g, state, t)
    reg_weight = family.reg_weight(state, t)
    # The ImageNet code's G step reuses the D step's noise (``dgm.g_noise=shared``).
    z_g = z_d if self.g_noise == "shared" else family.noise(keys["z_g"], batch.labels, t)

    def g_loss_fn(params):
      m = self._masks(params["emb"], s, exists)
      x, stats = family.forward(params, g_stats, z_g, t, m, counts, batch.labels, True, valid)
      c, logits, dst = self._d_apply(d, d_stats, x, True, valid)
      reg = hat.regulariser(m, state.cum, exists)
      loss = -self.lambda_adv * vmean(c) + reg_weight * reg
      if self.aux_g:
        loss += losses.cross_entropy(self._seen_logits(logits, t), batch.labels, valid)
      return loss, (stats, dst, reg, vmean(c))

    (g_loss, (g_stats, d_stats, reg, g_critic)), grads = jax.value_and_grad(
      g_loss_fn, has_aux=True
    )(g)
    grads = dict(
      grads,
      w=tuple(gw * f for gw, f in zip(grads["w"], cond)),
      emb=tuple(
        hat.compensate(ge, e, s, s_e, self.thres_cosh) * x
        for ge, e, x in zip(grads["emb"], g["emb"], exists)
      ),
    )
    updates, g_opt = self.tx_g.update(grads, state.g_opt, g)
    new_g = optax.apply_updates(g, updates)
    # Frozen and absent weights keep their exact values (a no-op with a fresh Adam state).
    new_g["w"] = tuple(jnp.where(f > 0, w1, w0) for w0, w1, f in zip(g["w"], new_g["w"], cond))
    metrics = {
      "loss": ce + d_loss + g_loss,
      "ce": ce,
      "d_loss": d_loss,
      "gp": gp,
      "wasserstein": w_dist,
      "g_loss": g_loss,
      "g_critic": g_critic,
      "reg": reg,
      "s": s,
      "train_accuracy": accuracy,
    }
    return state.replace(
      g=new_g, g_stats=g_stats, d=d, d_stats=d_stats, g_opt=g_opt, d_opt=d_opt, step_in_task=k + 1
    ), metrics

  def predict(self, state, images, task, phase):
    """D's aux logits in eval mode (BN statistics: ``dgm.d_statistics``'s), classes not seen
    yet at -inf."""
    del task, phase
    stats = state.eval_stats or state.d_stats
    _, logits, _ = self._d_apply(state.d, stats, to_unit(images), False)
    return self._seen_logits(logits, state.task)

  def end_task(self, state, task):
    """Binarise at s_max, cumulate, keep the embeddings, grow
    (docs/dgm.md#cumulative-masks-and-gradient-conditioning, docs/dgm.md#growth-after-each-task);
    with ``dgm.d_statistics=replay``, D's evaluation statistics from the grown G's replay."""
    return d_statistics.refresh(self, self.family.end_task(state, task), task)

  @property
  def epoch_end(self):
    """With ``best_valid`` the epoch hook runs; it evaluates D itself (``selection``, with
    statistics refreshed first under ``dgm.d_statistics=replay``)."""
    return "state" if self.selection == "best_valid" else "none"

  def end_epoch(self, state, task, accuracy):
    """With ``best_valid``: the code's validation evaluations (``selection``)."""
    del accuracy
    return dgm_selection.end_epoch(self, state, task)

  def after_task(self, state, task, benchmark) -> dict[str, np.ndarray]:
    """After task t: samples uint8 [t + 1, n, 32, 32, C] of every seen class from fixed
    noise (``summary.samples``); with ``best_valid``, the task's record."""
    del benchmark
    seen = (task.index + 1) * self.classes_per_task
    out = {"samples": summary.samples(self, state, seen)}
    if self.selection == "best_valid":
      out.update(dgm_selection.task_record(state, task.index))
    return out

  def results(self, state, benchmark):
    """With ``best_valid``: results.json's ``method.best_valid``, one record per task
    (``selection.summary``: the best validation average, its epoch, the test accuracies
    then and their mean)."""
    if self.selection != "best_valid":
      return None
    del benchmark  # the tasks trained are the state's (train.max_tasks may stop a run early)
    return {"best_valid": dgm_selection.summary(state, state.seen.shape[0])}

  def analyze(self, state, run):
    """Samples, growth, mask occupancy, A_t and size on disk (``methods/dgm/plots.py``)."""
    from dynamos_jax.methods.dgm import plots  # matplotlib: only the analyze command

    return {"dgm": plots.analyze_dgm(run.exp, state, run.progress, run.out, run.add, run.workdir)}

  def common_shape(self, states: list) -> list:
    """Several seeds' states (each grown by its own masks) padded to their widest widths
    (the trainer calls this after each hook of a multi-seed run; ``shapes``)."""
    return self.family.common_shape(states)


# One program per task (see shapes._closed): the new head, the optimiser states and the
# snapshot, op by op, compiled again at each task's shapes.
@functools.partial(jax.jit, static_argnames=("method", "t", "counts"))
def _begun(state, fresh, size, *, method: DGM, t: int, counts: tuple[int, ...]):
  d, d_stats, eval_stats = state.d, state.d_stats, state.eval_stats
  if t > 0:
    if method.reinit_d:
      d, d_stats = fresh["params"], fresh["batch_stats"]
    else:  # The reference's ImageNet path: only the critic and aux heads are reset.
      aux = fresh["params"]["aux"]
      if method.aux_head == "grow":  # ... the aux head's seen-class columns kept
        aux = dgm_imagenet.grown_aux(
          method._key(state, dgm_imagenet.AUX, t), d["aux"], t, method.classes_per_task
        )
      d = dict(d, critic=fresh["params"]["critic"], aux=aux)
    # A new D's statistics until the task's first re-estimation (``statistics``).
    eval_stats = jax.tree.map(jnp.copy, d_stats) if eval_stats else eval_stats
  g = method.family.new_heads(state.g, method._key(state, _HEAD, t), t, np.asarray(counts))
  return state.replace(
    g=g,
    d=d,
    d_stats=d_stats,
    eval_stats=eval_stats,
    g_opt=method.tx_g.init(g),
    d_opt=method.tx_d.init(d),
    snapshot=tuple(jnp.copy(w) for w in g["w"]),
    seen=jnp.arange(t + 1, dtype=jnp.int32),
    samples=size,
    batches=-(-size // method.batch_size),
    step_in_task=jnp.zeros((), jnp.int32),
  )
