"""The dgm.* config namespace of the dgm method (methods/dgm/dgm.py): defaults and validation.

Kept apart from the method so that configs, dgm_joint (which shares the
namespace) and the validation read one definition.
"""

import ml_collections

from dynamos_jax import benchmarks, conv
from dynamos_jax.benchmarks.one_class import OneClass
from dynamos_jax.errors import require

VARIANTS = ("w", "a")
SCHEDULES = ("code", "paper", "imagenet")
PLACEMENTS = ("reference", "hat")
EXPANSIONS = ("code", "paper", "none")
REPLAYS = ("fixed", "fresh")
LOOPS = ("auto", "scan", "unroll")
SELECTIONS = ("final", "best_valid")
GENERATORS = ("auto", "dcgan", "resnet")
PAST_MASKS = ("soft", "binary")
AUX_HEADS = ("reset", "grow")
G_NOISES = ("fresh", "shared")
D_STATISTICS = ("running", "replay")
CONVS = conv.IMPLEMENTATIONS


def defaults() -> ml_collections.ConfigDict:
  """The keys of the dgm.* namespace with their defaults (the MNIST DGMw release's)."""
  c = ml_collections.ConfigDict()
  c.variant = "w"  # w: DGMw (masks on weights) | a: DGMa (masks on channels)
  c.smax = 1e4  # s_max, the final mask scale (MNIST DGMw 1e4, DGMa 1e5)
  # Base weight of the mask sparsity regulariser (x alpha, docs/dgm.md#sparsity-regulariser).
  c.lambda_ru = 0.08
  c.lambda_gp = 1.0  # gradient-penalty weight of the WGAN-GP critic step
  c.lambda_adv = 1.0  # weight of the critic term in G's loss
  c.aux_g = False  # add CE(D's aux head on fakes, current class) to G's loss
  c.reinit_d = True  # re-initialise the whole D at every task > 0 (the MNIST/SVHN code)
  c.lr_d = 2e-3  # Adam learning rates (the run's top-level lr is not used)
  c.lr_g = 2e-3
  c.beta1 = 0.5  # Adam beta1; beta2 = 0.999 as the reference
  c.beta2 = 0.999
  c.ngf = 6  # G's width base (DGMw 6, DGMa 20)
  c.ndf = 32  # D's width base
  c.nz = 128  # noise size
  c.onehot = True  # write one-hot(class) into z[0:K] (the reference)
  # code: the released code's scale schedule (global (I-1)/I ramp; DGMw's
  # batch ramp runs downwards in each task's first epoch); paper: eqs. 3-4;
  # imagenet: the ImageNet code's ((e + 1) / I, the ramp over floor(N / B) + 1 batches).
  c.schedule = "code"
  # DGMa: where the channel mask multiplies: reference (conv output, before
  # the task's BN) | hat (after the ReLU, as HAT).
  c.mask_placement = "reference"
  # Growth after every task (docs/dgm.md#growth-after-each-task): code (DGMw credits
  # the free weights the input growth creates) | paper (a_l = ceil(delta_l / n_l)) | none.
  c.expansion = "code"
  c.shape_multiple = 8  # the per-task common shapes are rounded up to a multiple of this
  c.thres_cosh = 50.0  # the clip of s * e inside the compensation's cosh
  c.clip_norm = 1e4  # G's gradient-norm clip (inactive in practice, as the reference)
  # fixed: the replay set of past classes is one set per task, generated at
  # the task's start at s = s_max (the reference); fresh: new noise each step.
  c.replay = "fixed"
  # final: the model after each task (the accuracy matrix). best_valid: also
  # the code's report (methods/dgm/selection.py): every eval_every epochs and
  # after a task's last one, D scored on the held-out and the test images of
  # the classes seen; per task, the best validation average, its epoch and
  # the test accuracies then, kept per seed in the state and in the after-task
  # reports. A report only: D is not reverted and the accuracy matrix stays
  # the final model's.
  c.selection = "final"
  # D's BN statistics when it is evaluated (docs/dgm.md#batchnorm-statistics): running (the
  # authors' code: what training leaves, last moved by current-class batches) | replay (at a
  # task's end and before each best_valid evaluation, those of one batch of
  # statistics_images real images of the current class and as many of G's samples of each
  # past class; training unchanged). One class a task only.
  c.d_statistics = "running"
  c.statistics_images = 1000
  # The step's loops over the t + 1 CE chunks and the t replayed classes:
  # scan (one body, compiled once) | unroll (a copy per iteration: XLA:CPU runs
  # YNNPACK's convolution gradients inside a rolled loop on a slow path) | auto
  # (unroll on a CPU with YNNPACK's convolutions, scan elsewhere: cpu_kernels).
  c.loops = "auto"
  # D's strided and G's transposed convolutions: xla (XLA's own) | space_to_depth
  # (stride-1 convolutions of the space-to-depth input, every derivative in the same
  # form: dynamos_jax/conv.py) | auto (space_to_depth on CPU, where XLA runs strided
  # gradients on a slow path; xla elsewhere). The DCGAN family's G and D (the ImageNet
  # family's ResNets use XLA's convolutions).
  c.conv = "auto"
  # best_valid: D evaluated after epochs e (from 0) with e % eval_every == 0 (the
  # reference: 2 DGMw, 5 DGMa), and after the task's last epoch.
  c.eval_every = 2
  # Ten classes a task (methods/dgm/imagenet.py). generator: auto (the benchmark's:
  # the DCGAN G of docs/dgm.md#dcgan-generator for the one-class splits, the ResNet G
  # and D of docs/dgm.md#imagenet-networks for dgm-imagenet50) | dcgan | resnet (ndf is
  # then the ResNet D's stem width).
  c.generator = "auto"
  # soft: past tasks generate with sigmoid(S e) (the MNIST code) | binary: with
  # 1[sigmoid(S e) >= 0.5] (the ImageNet code's stored masks;
  # docs/dgm.md#soft-masks-for-past-tasks).
  c.past_masks = "soft"
  # With reinit_d=False, the aux head at a task start: reset (drawn afresh) | grow
  # (the ImageNet code: the seen classes' columns kept, the others drawn).
  c.aux_head = "reset"
  # G's step: fresh noise (the MNIST code) | shared: the D step's (the ImageNet code).
  c.g_noise = "fresh"
  c.onehot_dims = 0  # the one-hot prefix's width (0: the number of classes; ImageNet 100)
  c.d_blocks = 2  # the ResNet D's basic blocks per stage (2: ResNet-18; fewer: tests)
  return c


def generator(config) -> str:
  """The G family of a run: dgm.generator, or the benchmark's with ``auto``."""
  if config.dgm.generator != "auto":
    return config.dgm.generator
  return getattr(benchmarks.REGISTRY[config.dataset], "generator", "dcgan")


def validate(config) -> None:
  """Raises ConfigError with a one-line hint for a bad dgm.* value or benchmark."""
  d = config.dgm

  for key, choices in (
    ("variant", VARIANTS),
    ("schedule", SCHEDULES),
    ("mask_placement", PLACEMENTS),
    ("expansion", EXPANSIONS),
    ("replay", REPLAYS),
    ("selection", SELECTIONS),
    ("loops", LOOPS),
    ("generator", GENERATORS),
    ("past_masks", PAST_MASKS),
    ("aux_head", AUX_HEADS),
    ("g_noise", G_NOISES),
    ("d_statistics", D_STATISTICS),
    ("conv", CONVS),
  ):
    require(d[key] in choices, f"unknown dgm.{key} {d[key]!r}: use one of {', '.join(choices)}")
  require(d.smax > 0, f"dgm.smax must be > 0 (got {d.smax}): the mask scale, e.g. 1e4")
  for key in ("lr_d", "lr_g"):
    require(d[key] > 0, f"dgm.{key} must be > 0 (got {d[key]}), e.g. 2e-3")
  require(
    0 <= d.beta1 < 1 and 0 <= d.beta2 < 1,
    f"dgm.beta1 and dgm.beta2 must be in [0, 1) (got {d.beta1}, {d.beta2})",
  )
  for key in ("lambda_ru", "lambda_gp", "lambda_adv"):
    require(d[key] >= 0, f"dgm.{key} must be >= 0 (got {d[key]})")
  require(d.ngf >= 1 and d.ndf >= 1, f"dgm.ngf and dgm.ndf must be >= 1 (got {d.ngf}, {d.ndf})")
  require(
    d.shape_multiple >= 1,
    f"dgm.shape_multiple must be >= 1 (got {d.shape_multiple}): the growth rounds the "
    "shapes up to a multiple of it",
  )
  require(d.thres_cosh > 0 and d.clip_norm > 0, "dgm.thres_cosh and dgm.clip_norm must be > 0")
  require(d.eval_every >= 1, f"dgm.eval_every must be >= 1 (got {d.eval_every})")
  require(
    d.statistics_images >= 1,
    f"dgm.statistics_images must be >= 1 (got {d.statistics_images}): images per class, e.g. 1000",
  )
  benchmark = benchmarks.REGISTRY[config.dataset]
  require(
    issubclass(benchmark, OneClass),
    f"DGM trains on its one-class benchmarks (a hold-out per class, 32x32 images): "
    f"{config.dataset} is not one; use dgm-mnist, dgm-svhn, dgm-cifar10, dgm-imagenet50 or "
    "your arrays through benchmarks.from_arrays(..., protocol='dgm')",
  )
  classes = getattr(benchmark, "classes_per_task", 1)
  family = generator(config)
  require(
    classes == 1 or family == "resnet",
    f"the DCGAN generator has one head per task: {config.dataset} has {classes} classes "
    "per task; use a one-class benchmark or dgm-imagenet50 (the ResNet G's per-class heads)",
  )
  require(
    d.d_statistics == "running" or family == "dcgan",
    "dgm.d_statistics=replay re-estimates D's statistics from one class a task: use it with "
    "the DCGAN generator's benchmarks (dgm-mnist, dgm-svhn, dgm-cifar10) or keep running",
  )
  require(
    family != "resnet" or d.variant == "w",
    "the ResNet generator is DGMw only (masks on weights): use --config.dgm.variant=w",
  )
  require(
    family != "resnet" or (hasattr(benchmark, "generator") and benchmark.channels == 3),
    f"the ResNet generator makes 32x32 RGB images; {config.dataset} is not one of DGM's "
    "RGB benchmarks (dgm-svhn, dgm-cifar10, dgm-imagenet50): use --config.dgm.generator=auto",
  )
  require(
    d.onehot_dims >= 0 and d.d_blocks >= 1,
    f"dgm.onehot_dims must be >= 0 and dgm.d_blocks >= 1 (got {d.onehot_dims}, {d.d_blocks})",
  )
  labels = getattr(benchmark, "num_tasks", 1) * classes
  require(
    not d.onehot or d.onehot_dims == 0 or d.onehot_dims >= labels,
    f"dgm.onehot_dims={d.onehot_dims} cannot one-hot {config.dataset}'s {labels} labels: "
    "use 0 (the number of classes) or more",
  )
  require(
    d.nz >= (max(d.onehot_dims or labels, 10) if d.onehot else 1),
    f"dgm.nz={d.nz} cannot hold the one-hot class prefix: use dgm.nz >= the number of "
    "classes (and dgm.onehot_dims) or dgm.onehot=False",
  )
  require(
    not (d.selection == "best_valid" and getattr(benchmark, "holdout", 1) == 0),
    f"{config.dataset} holds no validation images out (the reference validates on its "
    "test images): use --config.dgm.selection=final",
  )
