"""The Python API: configs, training and a run's results from a notebook or a script.

  import dynamos_jax as dj

  config = dj.load_config("quickstart", **{"dynamos.alpha": 0.3, "seeds": "0,1"})
  results = dj.train(config)              # a temporary work directory
  results.matrix("class_il", seed=0)      # [T + 1, T] accuracies (%), NaN where unseen
  results.summary()                       # each metric's mean and std over the seeds
  logits = results.predict(images, seed=0)

Everything the command line checks is checked here, with the same one-line
messages (``errors.InputError``); training prints its progress bar and the
final tables, nothing else (docs/api.md).
"""

import dataclasses
import os
import tempfile

from absl import logging
import ml_collections
import numpy as np

from dynamos_jax.errors import ConfigError, InputError

# The configs of a source checkout (configs/ beside the package).
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _config_path(name_or_path: str) -> str:
  """The file of ``name_or_path``: a path, or a name of configs/ ("quickstart")."""
  for path in (name_or_path, os.path.join(CONFIGS, name_or_path)):
    for candidate in (path, path + ".py"):
      if os.path.isfile(candidate):
        return candidate
  names = (
    sorted(f[:-3] for f in os.listdir(CONFIGS) if f.endswith(".py"))
    if os.path.isdir(CONFIGS)
    else []
  )
  raise InputError(
    f"no config {name_or_path!r}: give a config file's path"
    + (f" or one of {', '.join(names)}" if names else "")
  )


def load_config(
  name_or_path: str, arg: str | None = None, **overrides
) -> ml_collections.ConfigDict:
  """The ConfigDict of a config file, with dotted overrides, validated as ``run`` does.

  Args:
    name_or_path: a config file's path or a name in configs/ ("quickstart",
      "dgm_mnist"); "NAME:ARG" as on the command line works too.
    arg: the config's argument (``configs/dgm_mnist.py:dgma`` -> "dgma").
    **overrides: dotted keys, ``**{"dynamos.alpha": 0.3}`` or ``epochs=2``; a
      renamed key is taken under its new name, as on the command line.

  Raises:
    InputError (ConfigError): an unknown config or key, a value of the wrong
      type, a value the validation refuses; one line each.
  """
  from dynamos_jax import config as config_lib
  from dynamos_jax import sweep

  if arg is None and ":" in os.path.basename(name_or_path):
    name_or_path, arg = name_or_path.rsplit(":", 1)
  path = _config_path(name_or_path)
  try:
    module = config_lib.load_config_module(path)
    config = module.get_config() if arg is None else module.get_config(arg)
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"cannot load {path}{':' + arg if arg else ''}: {e}") from None
  config.lock()  # as the command line's: an unknown key is an error, not a new key
  for key, value in overrides.items():
    key = config_lib.RENAMED.get(key, key)
    *parents, leaf = key.split(".")
    node = config
    try:
      for part in parents:
        node = node[part]
      node[leaf]  # noqa: B018  (an unknown key raises here, not on assignment)
      node[leaf] = value
    except (KeyError, AttributeError):
      raise ConfigError(
        f"unknown config key {key!r} (all keys and their defaults: dynamos_jax/config.py)"
      ) from None
    except TypeError as e:
      raise ConfigError(f"config key {key!r}: {e}") from None
  config_lib.validate(config)
  sweep.validate(config)
  return config


def train(config: ml_collections.ConfigDict, workdir: str | None = None) -> "Results":
  """Trains ``config`` (every seed of ``config.seeds``) and returns its ``Results``.

  ``workdir``: the run's directory (a run there resumes, as ``run`` does); None: a new
  temporary one, kept afterwards (``results.workdir``) so that the checkpoints stay
  readable. Raises InputError on bad input, as ``load_config``.
  """
  from dynamos_jax import config as config_lib
  from dynamos_jax import parallel, sweep, trainer

  config_lib.validate(config)
  sweep.validate(config)
  workdir = workdir or tempfile.mkdtemp(prefix="dynamos_jax_")
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  try:
    parallel.start(config)
    record = trainer.train_and_evaluate(config, workdir)
  finally:
    logging.set_verbosity(verbosity)
  return Results(record, os.path.abspath(workdir))


@dataclasses.dataclass(frozen=True)
class Results:
  """A run's results.json (``record``) and directory, read by seed.

  A sweep's members are not seeds: read ``record["runs"]`` and ``record["sweep"]``.
  """

  record: dict
  workdir: str
  # Each seed's restored (experiment, state, progress), read once.
  _restored_seeds: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @property
  def seeds(self) -> list[int]:
    """The run's seeds, in the order of its records."""
    if "runs" in self.record:
      return [r["seed"] for r in self.record["runs"]]
    return [self.record["config"]["seed"]]

  def run(self, seed: int | None = None) -> dict:
    """One seed's record (accuracy matrices, metrics, log; ``None``: the only seed)."""
    if "sweep" in self.record:
      raise InputError("a sweep's members are settings, not seeds: read record['runs']")
    if "runs" not in self.record:
      if seed not in (None, self.seeds[0]):
        raise InputError(f"seed {seed} is not one of this run's seeds {self.seeds}")
      return self.record
    if seed is None:
      raise InputError(f"this run has seeds {self.seeds}: pick one, e.g. seed={self.seeds[0]}")
    for r in self.record["runs"]:
      if r["seed"] == seed:
        return r
    raise InputError(f"seed {seed} is not one of this run's seeds {self.seeds}")

  def matrix(
    self, protocol: str = "class_il", seed: int | None = None, split: str = "test"
  ) -> np.ndarray:
    """float [T + 1, T]: row 0 before training, row t after task t; accuracy (%) on each
    task's test data (``split="validation"``: its held-out training data,
    ``data.validation``), NaN for tasks not seen yet (docs/metrics.md)."""
    run = self._split(self.run(seed), split)
    if protocol not in run:
      raise InputError(f"no {protocol!r} results: this run has {sorted(run)}")
    rows = run[protocol]["matrix"]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], float)

  def metrics(self, seed: int | None = None, split: str = "test") -> dict[str, dict[str, float]]:
    """{protocol: {final_average, forgetting, backward_transfer, forward_transfer}}."""
    run = self.run(seed)
    return run["metrics"] if split == "test" else self._split(run, split, "validation_metrics")

  def summary(self, split: str = "test") -> dict:
    """{protocol: {metric: {"mean", "std", "values"}}} over the seeds (one seed: std 0)."""
    if "runs" in self.record:
      return (
        self.record["summary"]
        if split == "test"
        else self._split(self.record, split, "validation_summary")
      )
    return {
      protocol: {k: {"mean": v, "std": 0.0, "values": [v]} for k, v in metrics.items()}
      for protocol, metrics in self.metrics(split=split).items()
    }

  @staticmethod
  def _split(record: dict, split: str, key: str = "validation"):
    """The test part of ``record`` (itself), or its ``key`` for the validation split."""
    if split == "test":
      return record
    if split != "validation":
      raise InputError(f"unknown split {split!r}: use 'test' or 'validation'")
    if key not in record:
      raise InputError("this run holds no validation split: train with data.validation > 0")
    return record[key]

  @property
  def classes(self) -> np.ndarray:
    """[K] the label each column of ``predict``'s logits stands for: the dataset's own
    (0..K-1) or, for a ``benchmarks.from_arrays`` benchmark, the user's labels in task
    order."""
    from dynamos_jax import benchmarks

    benchmark = benchmarks.REGISTRY.get(self.record["config"]["dataset"])
    if getattr(benchmark, "classes", None) is not None:
      return np.asarray(benchmark.classes)
    exp, _, _ = self._restored(self.seeds[0])
    return np.arange(exp.benchmark.num_classes)

  def classify(self, images, seed: int | None = None, batch_size: int = 256) -> np.ndarray:
    """[N] the class-IL prediction of ``predict``, as labels (``classes``)."""
    return self.classes[np.argmax(self.predict(images, seed, batch_size), -1)]

  def predict(self, images, seed: int | None = None, batch_size: int = 256) -> np.ndarray:
    """float32 [N, K] logits of the seed's final model on ``images`` [N, H, W, C] (uint8 as
    the benchmark's, or float in [0, 1]); column k is class ``classes[k]``. DGM's
    benchmarks resize them to 32x32 as they resize their own; no per-task transform
    (permuted MNIST's permutation) is applied."""
    from dynamos_jax import accuracy
    from dynamos_jax.benchmarks import arrays, one_class

    exp, state, progress = self._restored(self.seeds[0] if seed is None else seed)
    shape = tuple(exp.benchmark.image_shape)
    images = arrays.images("predict", images, shape[-1])
    if isinstance(exp.benchmark, one_class.OneClass):  # DGM's: resized as its own images
      images = one_class.resize_bilinear(images)
    if images.ndim != 4 or images.shape[1:] != shape:
      raise InputError(f"images must be [N, {', '.join(map(str, shape))}]; got {images.shape}")
    predict = exp.predictors(state.learner, exp.phase_after(progress["next_chunk"]))
    return accuracy.predict_logits(lambda x: predict(x, None), images, batch_size)

  def _restored(self, seed: int):
    from dynamos_jax import trainer

    if seed not in self.seeds:
      raise InputError(f"seed {seed} is not one of this run's seeds {self.seeds}")
    if seed not in self._restored_seeds:
      multi = len(self.seeds) > 1
      self._restored_seeds[seed] = trainer.restore_seeds(self.workdir, seed if multi else None)[0]
    return self._restored_seeds[seed]
