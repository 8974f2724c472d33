"""Run configuration: the defaults every config file starts from, and validation.

Config files under configs/ call ``base_config()`` and change what their
benchmark needs; ``validate`` turns bad values into one-line ``ConfigError``s
that say what to change.
"""

import importlib.util
import os

import ml_collections

from dynamos_jax import benchmarks, methods
from dynamos_jax.errors import ConfigError, require

DATA_SOURCES = ("bundled", "files", "tfds")
CHUNK_STRATEGIES = ("auto", "loop", "scan")
SEED_STRATEGIES = ("auto", "vmap", "unroll")
RANK_ON = ("validation", "test")

# Keys that moved into a method's namespace: the old command lines and the
# configs saved with older runs keep working (``cli.parse_flags`` and
# ``migrate`` rewrite them).
RENAMED = {
  **{k: f"dynamos.{k}" for k in ("alpha", "beta", "alpha_p", "gamma", "w_p", "lam", "kr", "tau")},
  "warmup.iterations": "dynamos.warmup.iterations",
  "warmup.epochs": "dynamos.warmup.epochs",
}


def base_config() -> ml_collections.ConfigDict:
  """All keys a run reads, with the reference implementation's defaults.

  The top-level keys are the run's (benchmark, seeds, data, the shared
  training protocol of the loss-style methods, checkpoints, the trainer);
  each method's own keys live under its namespace (``dynamos.*``,
  ``derpp.*``, ...), declared with the method.
  """
  c = ml_collections.ConfigDict()
  c.method = "dynamos"
  c.dataset = "seq-mnist"  # the benchmark (dynamos_jax/benchmarks/)
  c.seed = 0
  # Several seeds in one program, e.g. "0,1,2,3" (then `seed` is unused):
  # results.json holds each seed's results and their mean and std.
  c.seeds = ""
  # Several settings of numeric hyperparameters in one program (a grid, members =
  # settings x seeds), e.g. "dynamos.alpha=0.1,0.5;lr=0.05,0.1": each setting's
  # results in WORKDIR/sweep/<setting>/ and a table of them (docs/running.md#sweeps).
  # Which setting is named best: train.rank_on.
  c.sweep = ""
  # The protocol every loss-style method shares (the reference code's):
  # plain SGD at `lr`, the batch sizes, the reservoir buffer.
  c.buffer_size = 500
  c.batch_size = 10
  c.minibatch_size = 10  # replay batch B_M
  c.lr = 0.07
  c.epochs = 1  # per task

  for cls in methods.REGISTRY.values():
    if cls.namespace and cls.namespace not in c:
      c[cls.namespace] = cls.defaults()

  c.model = ml_collections.ConfigDict()
  c.model.nf = 32
  c.model.mlp_reduction = 16
  # True: each agent's pointwise conv -> BN -> pool computed from its input's
  # moments (W mean_hw(x), W^T E[x x^T] W), never the [B, H, W, C] conv output:
  # the same function and BN running statistics, other float rounding, a
  # faster step (docs/results.md#dynamos-beside-the-authors-code). False: the
  # Flax layers (the step the golden outputs pin).
  c.model.agent_moments = True

  c.buffer = ml_collections.ConfigDict()
  # False: reference semantics (misclassified fill-phase samples leave zero
  # slots that are replayed). True: count and sample only written slots.
  # See docs/dynamos.md#replay-buffer.
  c.buffer.only_valid = False

  c.data = ml_collections.ConfigDict()
  c.data.source = "tfds"
  c.data.path = ""  # for source=files: mnist.pkl.gz, or a folder of IDX files
  c.data.tfds_data_dir = ""  # for source=tfds; empty: TFDS's default
  # > 0: this share of each class's training samples held out (seeded, per class) and
  # scored after every task beside the test set (docs/running.md#a-validation-split).
  c.data.validation = 0.0

  c.mnist360 = ml_collections.ConfigDict()
  # True: the reference's test draws (each test batch the first B items of a
  # fresh shuffle of the class, so an image's angle depends on draw order);
  # False: Mammoth's later fix, each test image once, in order (docs/data.md#mnist-360).
  c.mnist360.shuffle_test = True
  # Draws per chunk item: 1 is the reference's stream; r > 1 a stream r times as
  # long over the same chunks (small datasets: configs/mnist360_quick.py).
  c.mnist360.repeats = 1

  c.resume = True  # continue from WORKDIR/checkpoints if there are any

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000  # besides every task end (and on SIGINT/SIGTERM)
  c.checkpoint.keep = 3

  c.train = ml_collections.ConfigDict()
  c.train.max_steps_per_task = 0  # 0 = no limit (smoke runs set a few)
  # Stop after this many tasks (0: all), results.json complete for them; raise it and
  # run the same command again to go on from the checkpoint.
  c.train.max_tasks = 0
  c.train.chunk_size = 100  # steps between host syncs (progress, logs)
  c.train.chunk_strategy = "auto"  # loop | scan | auto (loop on CPU, scan elsewhere)
  c.train.progress = True
  # Per-chunk metrics as the run goes: WORKDIR/live/seed_N/ (JSON lines, TensorBoard).
  c.train.live_metrics = True
  c.train.eval_batch_size = 1000
  # How one program runs several seeds: vmap batches them into every op;
  # unroll repeats the step once per seed (XLA:CPU turns a vmapped
  # convolution with per-seed weights into a grouped convolution 8-10x slower
  # than the seeds one by one: docs/speed.md#seeds-devices-and-loops-on-a-cpu-2026-11-21).
  # auto: unroll on CPU, vmap elsewhere. Either way the seed axis is sharded
  # over the devices.
  c.train.seed_strategy = "auto"
  # Devices the seed axis is sharded over: 0 = as many as divide the seeds.
  c.train.seed_devices = 0
  # The split a sweep's best setting is chosen on (docs/running.md#sweeps): "validation"
  # (the data.validation split; without one no setting is named best) or "test" (the test
  # set, chosen knowingly). It changes which setting is named best, never an accuracy.
  c.train.rank_on = "validation"
  # > 0: expose the CPU as this many XLA devices so the seeds' shards run on
  # separate cores (set before JAX starts; run.py applies it). 0: leave as is.
  # XLA:CPU's kernels split work by the process's thread pool, so a process
  # with another device count may round differently
  # (docs/speed.md#seeds-devices-and-loops-on-a-cpu-2026-11-21).
  c.train.host_devices = 0
  # True: a one-seed Dynamos step runs its two train-mode passes (current
  # batch, replay batch) side by side on two devices (on CPU: two cores with
  # train.host_devices=2), gradients summed; the BN running statistics are
  # chained as in the one-device step (methods/dynamos/two_pass.py).
  # Experimental: two quick-start runs on the loaded 2-core CPU hung in the
  # devices' all-reduce (XLA:CPU's rendezvous timed out after 40 s and aborted
  # the process; docs/speed.md#cpu-switches).
  c.train.parallel_passes = False
  # Multi-host: call jax.distributed.initialize() first (docs/running.md#multi-host).
  c.train.distributed = False
  # Where compiled programs are kept between runs (JAX's persistent compilation
  # cache; a second run of a config skips most compile time; no number changes).
  # "" turns it off; a cache directory set through JAX (JAX_COMPILATION_CACHE_DIR)
  # is left as it is.
  c.train.compilation_cache = "~/.cache/dynamos_jax/xla"
  return c


def run_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """The seeds a run trains: ``config.seeds`` parsed, or ``[config.seed]`` when it is empty."""
  text = str(config.seeds).strip()
  if not text:
    return [int(config.seed)]
  try:
    seeds = [int(s) for s in text.split(",")]
  except ValueError:
    raise ConfigError(
      f"seeds must be integers separated by commas, e.g. --config.seeds=0,1,2 (got {text!r})"
    ) from None
  require(len(set(seeds)) == len(seeds), f"seeds must not repeat a seed (got {text!r})")
  require(min(seeds) >= 0, f"seeds must be >= 0 (got {text!r})")
  return seeds


def table5_config(
  table: dict[int, dict], arg: str | None, default: int, name: str, dynamos: dict, **values
) -> ml_collections.ConfigDict:
  """A benchmark's config for the Table 5 row of buffer size ``arg`` (plain: ``default``).

  Args:
    table: {buffer size: Eq. 7's loss weights} of the benchmark.
    arg: the config file's argument (``configs/NAME.py:ARG``), or None.
    default: the buffer size when there is no argument.
    name: the config file, for the error message.
    dynamos: the benchmark's other ``dynamos.*`` keys (keep ratio, warm-up).
    **values: the benchmark's other keys (nested ones as dicts).
  """
  buffer_size = int(arg) if arg else default
  if buffer_size not in table:
    raise ValueError(
      f"{name}:{arg}: Table 5 has buffer sizes {sorted(table)}; use one of "
      "them or override --config.buffer_size"
    )
  c = base_config()
  c.update(values)
  c.buffer_size = buffer_size
  c.dynamos.update(dynamos)
  c.dynamos.update(table[buffer_size])
  return c


def load_config_module(path: str):
  """The config file at ``path`` as a module (config files are loaded by path, not as a
  package: by ``--config``, ``api.load_config`` and ``sibling_config``)."""
  spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling_config(here: str, name: str):
  """The config module ``name`` (e.g. "seq_mnist.py") next to the config file ``here``, so
  that one config file builds on another."""
  return load_config_module(os.path.join(os.path.dirname(os.path.abspath(here)), name))


def migrate(saved: dict) -> dict:
  """A config saved by an older version with today's key names (``RENAMED``) and today's
  names for values whose meaning moved (``_renamed_values``)."""
  flat = {}

  def walk(d, prefix=""):
    for k, v in d.items():
      if isinstance(v, dict):
        walk(v, f"{prefix}{k}.")
      else:
        flat[RENAMED.get(f"{prefix}{k}", f"{prefix}{k}")] = v

  walk(saved)
  _renamed_values(flat)
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def _renamed_values(flat: dict) -> None:
  """Old values under their new names, in ``flat`` (dotted keys), so that a saved run
  resumes and evaluates as it ran.

  ``slni.selection=best_epoch`` selected on the test set until it moved to the validation
  split; that rule is now ``best_test_epoch`` (docs/slni.md#model-selection). Today's
  ``best_epoch`` refuses a run without a split, so a saved one without a split
  (``data.validation`` absent or 0) is the old rule.
  """
  if flat.get("slni.selection") == "best_epoch" and not flat.get("data.validation", 0.0):
    flat["slni.selection"] = "best_test_epoch"


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError with a one-line hint for the first bad value found.

  The run's own keys are checked here, the method's and the benchmark's by
  their ``validate``.
  """
  require(
    config.method in methods.REGISTRY,
    f"unknown method {config.method!r}: set --config.method to one of "
    f"{', '.join(sorted(methods.REGISTRY))}",
  )
  require(
    config.dataset in benchmarks.REGISTRY,
    f"unknown dataset {config.dataset!r}: set --config.dataset to one of "
    f"{', '.join(sorted(benchmarks.REGISTRY))}",
  )
  require(
    config.data.source in DATA_SOURCES,
    f"unknown data source {config.data.source!r}: set --config.data.source to one of "
    f"{', '.join(DATA_SOURCES)}",
  )
  require(
    config.buffer_size >= 0,
    f"buffer_size must be >= 0 (got {config.buffer_size}): set --config.buffer_size=500 "
    "or another non-negative size",
  )
  require(config.batch_size >= 1, f"batch_size must be >= 1 (got {config.batch_size})")
  require(config.minibatch_size >= 1, f"minibatch_size must be >= 1 (got {config.minibatch_size})")
  require(config.lr > 0.0, f"lr must be > 0 (got {config.lr})")
  require(config.epochs >= 1, f"epochs must be >= 1 (got {config.epochs})")
  benchmark, method = benchmarks.REGISTRY[config.dataset], methods.REGISTRY[config.method]
  require(
    benchmark.kind in method.kinds,
    f"method {config.method} runs on {' or '.join(method.kinds)} benchmarks and "
    f"{config.dataset} is {benchmark.kind}: set --config.dataset to one of "
    + ", ".join(sorted(n for n, b in benchmarks.REGISTRY.items() if b.kind in method.kinds)),
  )
  benchmark.validate(config)
  benchmark.check_validation(config)
  method.validate(config)
  require(config.train.max_steps_per_task >= 0, "train.max_steps_per_task must be >= 0")
  require(
    config.train.max_tasks >= 0,
    f"train.max_tasks must be >= 0 (got {config.train.max_tasks}; 0: every task)",
  )
  require(
    not (config.train.max_tasks and benchmark.protocols == ("gcl",)),
    f"{config.dataset} is evaluated once, at the end of its stream: train.max_tasks "
    "would leave no result; drop it (or use --config.train.max_steps_per_task)",
  )
  require(config.checkpoint.every_steps >= 1, "checkpoint.every_steps must be >= 1")
  require(config.checkpoint.keep >= 1, "checkpoint.keep must be >= 1 (checkpoints to keep)")
  require(config.train.chunk_size >= 1, "train.chunk_size must be >= 1")
  require(
    config.train.chunk_strategy in CHUNK_STRATEGIES,
    f"unknown train.chunk_strategy {config.train.chunk_strategy!r}: use one of "
    f"{', '.join(CHUNK_STRATEGIES)}",
  )
  require(
    config.train.seed_strategy in SEED_STRATEGIES,
    f"unknown train.seed_strategy {config.train.seed_strategy!r}: use one of "
    f"{', '.join(SEED_STRATEGIES)}",
  )
  require(
    config.train.rank_on in RANK_ON,
    f"unknown train.rank_on {config.train.rank_on!r}: use validation (the data.validation "
    "split) or test (the test set, knowingly)",
  )
  require(config.train.host_devices >= 0, "train.host_devices must be >= 0 (0: leave as is)")
  require(config.train.seed_devices >= 0, "train.seed_devices must be >= 0 (0: all that fit)")
  run_seeds(config)
  require(
    config.data.source != "files" or bool(config.data.path),
    "data.source=files needs --config.data.path=PATH (MNIST: mnist.pkl.gz or a folder of IDX "
    "files; other datasets: their folder, see docs/data.md#datasets)",
  )
