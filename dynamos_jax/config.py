"""Run configuration: the defaults every config file starts from, and validation.

Config files under configs/ call ``base_config()`` and change what their
benchmark needs; ``validate`` turns bad values into one-line ``ConfigError``s
that say what to change.
"""

import ml_collections

from dynamos_jax.errors import ConfigError

DATASETS = ("seq-mnist", "seq-svhn", "mnist-360")
DATA_SOURCES = ("bundled", "files", "tfds")
CHUNK_STRATEGIES = ("auto", "loop", "scan")
SEED_STRATEGIES = ("auto", "vmap", "unroll")


def base_config() -> ml_collections.ConfigDict:
  """All keys a run reads, with the reference implementation's defaults."""
  c = ml_collections.ConfigDict()
  c.method = "dynamos"
  c.dataset = "seq-mnist"
  c.seed = 0
  # Several seeds in one program, e.g. "0,1,2,3" (then `seed` is unused):
  # results.json holds each seed's results and their mean and std.
  c.seeds = ""
  c.buffer_size = 500
  c.batch_size = 10
  c.minibatch_size = 10  # replay batch B_M
  c.lr = 0.07
  c.epochs = 1  # per task
  # Loss weights under their paper names (spec section 0).
  c.alpha = 0.2  # logit consistency on replayed samples
  c.beta = 2.0  # replay cross-entropy and replay REINFORCE
  c.alpha_p = 0.2  # attention-vector consistency on replayed samples
  c.gamma = 0.5  # REINFORCE weight
  c.w_p = 0.3  # prototype loss weight
  c.lam = 500.0  # penalty on the reward of misclassified samples (code: -policy_penalty)
  c.kr = 0.7  # target keep ratio per agent
  c.tau = 0.15  # temperature of the agents' probability layer

  # DER++ weights (Buzzega et al. 2020; Mammoth's best_args for seq-mnist,
  # buffer 500). The paper gives none for the baselines; every method shares
  # the optimiser, lr and batch sizes above.
  c.derpp = ml_collections.ConfigDict()
  c.derpp.alpha = 1.0  # logit MSE on the first replay draw
  c.derpp.beta = 0.5  # cross-entropy on the second replay draw

  c.model = ml_collections.ConfigDict()
  c.model.nf = 32
  c.model.mlp_reduction = 16

  # Warm-up: agent-free CE-only training at the very start of task 1.
  # Exactly one of the two is > 0 (or both 0: no warm-up).
  c.warmup = ml_collections.ConfigDict()
  c.warmup.iterations = 10
  c.warmup.epochs = 0

  c.buffer = ml_collections.ConfigDict()
  # False: reference semantics (spec 8; misclassified fill-phase samples leave
  # zero slots that are replayed). True: count and sample only written slots.
  c.buffer.only_valid = False

  c.data = ml_collections.ConfigDict()
  c.data.source = "tfds"
  c.data.path = ""  # for source=files: mnist.pkl.gz, or a folder of IDX files
  c.data.tfds_data_dir = ""  # for source=tfds; empty: TFDS's default

  c.mnist360 = ml_collections.ConfigDict()
  # True: the reference's test draws (each test batch the first B items of a
  # fresh shuffle of the class, so an image's angle depends on draw order);
  # False: Mammoth's later fix, each test image once, in order (README).
  c.mnist360.shuffle_test = True

  c.resume = True  # continue from WORKDIR/checkpoints if there are any

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 1000  # besides every task end (and on SIGINT/SIGTERM)
  c.checkpoint.keep = 3

  c.train = ml_collections.ConfigDict()
  c.train.max_steps_per_task = 0  # 0 = no limit (smoke runs set a few)
  c.train.chunk_size = 100  # steps between host syncs (progress, logs)
  c.train.chunk_strategy = "auto"  # loop | scan | auto (loop on CPU, scan elsewhere)
  c.train.progress = True
  c.train.eval_batch_size = 1000
  # How one program runs several seeds: vmap batches them into every op;
  # unroll repeats the step once per seed (XLA:CPU turns a vmapped
  # convolution with per-seed weights into a grouped convolution about 8x
  # slower than the seeds one by one: benchmarks/README.md). auto: unroll on
  # CPU, vmap elsewhere. Either way the seed axis is sharded over the devices.
  c.train.seed_strategy = "auto"
  # Devices the seed axis is sharded over: 0 = as many as divide the seeds.
  c.train.seed_devices = 0
  # > 0: expose the CPU as this many XLA devices so the seeds' shards run on
  # separate cores (set before JAX starts; run.py applies it). 0: leave as is.
  # XLA:CPU's kernels split work by the process's thread pool, so a process
  # with another device count may round differently (benchmarks/README.md).
  c.train.host_devices = 0
  # Multi-host: call jax.distributed.initialize() first (README "Many seeds").
  c.train.distributed = False
  return c


def run_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """The seeds a run trains: ``config.seeds`` parsed, or ``[config.seed]`` when it is empty."""
  text = str(config.seeds).strip()
  if not text:
    return [int(config.seed)]
  try:
    seeds = [int(s) for s in text.split(",")]
  except ValueError:
    raise ConfigError(f"seeds must be integers separated by commas, e.g. --config.seeds=0,1,2 "
                      f"(got {text!r})") from None
  _check(len(set(seeds)) == len(seeds), f"seeds must not repeat a seed (got {text!r})")
  _check(min(seeds) >= 0, f"seeds must be >= 0 (got {text!r})")
  return seeds


def table5_config(table: dict[int, dict], arg: str | None, default: int, name: str,
                  **values) -> ml_collections.ConfigDict:
  """A benchmark's config for the Table 5 row of buffer size ``arg`` (plain: ``default``).

  Args:
    table: {buffer size: loss weights} of the benchmark.
    arg: the config file's argument (``configs/NAME.py:ARG``), or None.
    default: the buffer size when there is no argument.
    name: the config file, for the error message.
    **values: the benchmark's other keys (nested ones as dicts).
  """
  buffer_size = int(arg) if arg else default
  if buffer_size not in table:
    raise ValueError(f"{name}:{arg}: Table 5 has buffer sizes {sorted(table)}; use one of "
                     "them or override --config.buffer_size")
  c = base_config()
  c.update(values)
  c.buffer_size = buffer_size
  c.update(table[buffer_size])
  return c


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError with a one-line hint for the first bad value found."""
  from dynamos_jax import methods  # The registry imports the trainers' pieces.

  _check(config.method in methods.REGISTRY,
         f"unknown method {config.method!r}: set --config.method to one of "
         f"{', '.join(sorted(methods.REGISTRY))}")
  _check(config.dataset in DATASETS,
         f"unknown dataset {config.dataset!r}: set --config.dataset to one of {', '.join(DATASETS)}")
  _check(config.data.source in DATA_SOURCES,
         f"unknown data source {config.data.source!r}: set --config.data.source to one of "
         f"{', '.join(DATA_SOURCES)}")
  _check(config.buffer_size >= 0,
         f"buffer_size must be >= 0 (got {config.buffer_size}): set --config.buffer_size=500 "
         "or another non-negative size")
  _check(config.batch_size >= 1, f"batch_size must be >= 1 (got {config.batch_size})")
  _check(config.minibatch_size >= 1,
         f"minibatch_size must be >= 1 (got {config.minibatch_size})")
  _check(0.0 < config.kr <= 1.0, f"keep ratio kr must be in (0, 1] (got {config.kr})")
  _check(config.tau > 0.0, f"temperature tau must be > 0 (got {config.tau})")
  _check(config.lr > 0.0, f"lr must be > 0 (got {config.lr})")
  _check(config.epochs >= 1, f"epochs must be >= 1 (got {config.epochs})")
  _check(config.lam >= 0.0,
         f"lam (the penalty lambda, positive in the paper's convention) must be >= 0 "
         f"(got {config.lam}); the reference code's --policy-penalty=-500 is lam=500")
  for name in ("alpha", "beta", "alpha_p", "gamma", "w_p"):
    _check(config[name] >= 0.0, f"{name} must be >= 0 (got {config[name]})")
  for name in ("alpha", "beta"):
    _check(config.derpp[name] >= 0.0, f"derpp.{name} must be >= 0 (got {config.derpp[name]})")
  method = methods.REGISTRY[config.method]
  _check(config.buffer_size >= 1 or not method.uses_buffer or method.gated,
         f"method {config.method} replays from a buffer: set --config.buffer_size >= 1 "
         "(or use --config.method=sgd for no buffer)")
  _check(config.warmup.iterations >= 0 and config.warmup.epochs >= 0,
         "warmup.iterations and warmup.epochs must be >= 0")
  _check(not (config.warmup.iterations and config.warmup.epochs),
         "set only one of warmup.iterations and warmup.epochs (the other to 0)")
  _check(config.warmup.epochs <= config.epochs,
         f"warmup.epochs ({config.warmup.epochs}) exceeds epochs per task ({config.epochs})")
  _check(config.dataset != "mnist-360" or (config.epochs == 1 and not config.warmup.epochs),
         "mnist-360 is a single pass over its stream: set --config.epochs=1 and warm-up in "
         "iterations (--config.warmup.epochs=0 --config.warmup.iterations=10)")
  _check(config.train.max_steps_per_task >= 0, "train.max_steps_per_task must be >= 0")
  _check(config.checkpoint.every_steps >= 1, "checkpoint.every_steps must be >= 1")
  _check(config.checkpoint.keep >= 1, "checkpoint.keep must be >= 1 (checkpoints to keep)")
  _check(config.train.chunk_size >= 1, "train.chunk_size must be >= 1")
  _check(config.train.chunk_strategy in CHUNK_STRATEGIES,
         f"unknown train.chunk_strategy {config.train.chunk_strategy!r}: use one of "
         f"{', '.join(CHUNK_STRATEGIES)}")
  _check(config.train.seed_strategy in SEED_STRATEGIES,
         f"unknown train.seed_strategy {config.train.seed_strategy!r}: use one of "
         f"{', '.join(SEED_STRATEGIES)}")
  _check(config.train.host_devices >= 0, "train.host_devices must be >= 0 (0: leave as is)")
  _check(config.train.seed_devices >= 0, "train.seed_devices must be >= 0 (0: all that fit)")
  run_seeds(config)
  _check(config.data.source != "files" or bool(config.data.path),
         "data.source=files needs --config.data.path=PATH (mnist.pkl.gz or a folder of IDX files)")
