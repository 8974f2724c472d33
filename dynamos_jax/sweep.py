"""Hyperparameter sweeps in one program: a grid of settings, stacked like seeds.

``--config.sweep="dynamos.alpha=0.1,0.5;lr=0.05,0.1"`` trains the grid of every
combination of the listed values (here 4 settings), each with every seed of
the run (members = settings x seeds, setting-major), in one compiled program
laid out as seeds.py lays out seeds: one Experiment per member, the states
stacked on the leading axis. Only numeric hyperparameters that change neither
shapes, the plan nor the data may be swept (``sweepable``): ``lr`` and the
float keys of the run's method namespace. Integers are sizes, counts and
schedules; strings and booleans pick code paths; the other top-level keys
pick the data and the plan.

How a member's values reach its step (parallel.over_seeds):
  unroll: every member's own method object, its step traced with its own
    constants, so a member computes exactly what its setting alone computes.
  vmap: the fields in which the members' method objects differ (found by
    comparing them, ``varying_fields``) travel as traced [M] arrays and the
    step rebuilds the method with the member's values (``with_values``).

Results: results.json's ``runs`` (one per member, with its ``setting``) and
``sweep`` (each setting's mean and std over the seeds, the best setting and the
split it was chosen on: the validation split, or the test set only when asked
with ``train.rank_on=test``; without either no best, docs/running.md#sweeps);
WORKDIR/sweep/<label>/results.json is each setting as if run alone, and
``evaluate``/``analyze --workdir=WORKDIR/sweep/<label>`` reach its members.
"""

import dataclasses
import itertools
import math
import os

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from dynamos_jax import config as config_lib
from dynamos_jax import methods
from dynamos_jax.errors import ConfigError
from dynamos_jax.live import LiveMetrics

DIRECTORY = "sweep"  # WORKDIR/sweep/<label>/: each setting's results


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A parsed sweep: the swept keys (in order) and every setting of the grid.

  settings: one ``{key: value}`` per setting, the grid in row-major order of
    the keys (the last key varies fastest).
  """

  keys: tuple[str, ...]
  settings: tuple[dict[str, float], ...]

  def label(self, setting: dict[str, float]) -> str:
    """A setting's name and folder: ``dynamos.alpha=0.1_lr=0.05``."""
    return "_".join(f"{k}={_number(setting[k])}" for k in self.keys)

  @property
  def labels(self) -> list[str]:
    return [self.label(s) for s in self.settings]


def _number(value: float) -> str:
  return repr(float(value))


def _leaf(config: ml_collections.ConfigDict, key: str):
  node = config
  for part in key.split(".")[:-1]:
    node = node[part]
  return node[key.split(".")[-1]]


def sweepable(config: ml_collections.ConfigDict) -> list[str]:
  """The keys a sweep may list: ``lr`` and the float keys of the methods'
  namespaces (``dynamos.alpha``, ``slni.lambda_ssl``, ...); whether the run's
  method reads one is checked on its method objects (``check_read``)."""
  keys = ["lr"]

  def walk(node, prefix):
    for k, v in node.items():
      if isinstance(v, ml_collections.ConfigDict):
        walk(v, f"{prefix}{k}.")
      elif isinstance(v, float):
        keys.append(f"{prefix}{k}")

  for namespace in dict.fromkeys(c.namespace for c in methods.REGISTRY.values()):
    if namespace and namespace in config:
      walk(config[namespace], f"{namespace}.")
  return keys


def parse(config: ml_collections.ConfigDict) -> Sweep | None:
  """``config.sweep`` as a Sweep (None when empty); one-line ConfigErrors for bad text."""
  text = str(config.sweep).strip()
  if not text:
    return None
  allowed = sweepable(config)
  keys, values = [], []
  for part in text.split(";"):
    part = part.strip()
    if not part:
      continue
    if "=" not in part:
      raise ConfigError(
        f"sweep entry {part!r} is not KEY=V1,V2,...: write e.g. "
        "--config.sweep='dynamos.alpha=0.1,0.5;lr=0.05,0.1'"
      )
    key, listed = (s.strip() for s in part.split("=", 1))
    key = config_lib.RENAMED.get(key, key)
    try:
      current = _leaf(config, key)
    except (KeyError, AttributeError):
      raise ConfigError(
        f"sweep: unknown config key {key!r} (sweepable: lr and the float "
        "keys of the methods' namespaces, e.g. dynamos.alpha)"
      ) from None
    if key not in allowed:
      why = (
        "not a number"
        if isinstance(current, (bool, str, ml_collections.ConfigDict))
        else "it changes the shapes, the plan or the data"
      )
      raise ConfigError(
        f"sweep: {key} cannot be swept ({why}); sweepable: lr and the float "
        "keys of the methods' namespaces (e.g. dynamos.alpha, dynamos.kr, "
        "derpp.beta, slni.lambda_ssl)"
      )
    if key in keys:
      raise ConfigError(f"sweep: {key} is listed twice; give all its values in one entry")
    items = [v.strip() for v in listed.split(",")]
    if not listed.strip() or any(not v for v in items):
      raise ConfigError(
        f"sweep: {key} has an empty value list or an empty value "
        f"({part!r}); write e.g. {key}=0.1,0.5"
      )
    try:
      numbers = [float(v) for v in items]
    except ValueError:
      numbers = []
    if len(numbers) != len(items) or not all(math.isfinite(v) for v in numbers):
      raise ConfigError(f"sweep: the values of {key} must be finite numbers (got {listed!r})")
    if len(set(numbers)) != len(numbers):
      raise ConfigError(f"sweep: {key} repeats a value ({listed!r})")
    keys.append(key)
    values.append(numbers)
  if not keys:
    raise ConfigError("sweep lists no key: write e.g. --config.sweep='dynamos.alpha=0.1,0.5'")
  settings = tuple(dict(zip(keys, combo)) for combo in itertools.product(*values))
  return Sweep(tuple(keys), settings)


def setting_config(
  config: ml_collections.ConfigDict, setting: dict[str, float]
) -> ml_collections.ConfigDict:
  """The config of one setting run alone: ``config`` with its values and no sweep."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.sweep = ""
    for key, value in setting.items():
      *parents, leaf = key.split(".")
      node = c
      for p in parents:
        node = node[p]
      node[leaf] = float(value)
  return c


def validate(config: ml_collections.ConfigDict) -> Sweep | None:
  """Parses the sweep and validates every setting's config (one-line ConfigErrors)."""
  sweep = parse(config)
  if sweep is None:
    return None
  for setting in sweep.settings:
    try:
      config_lib.validate(setting_config(config, setting))
    except ConfigError as e:
      raise ConfigError(f"sweep setting {sweep.label(setting)}: {e}") from None
  return sweep


# ---- the vmap path: where the members' method objects differ ----


def _fields(obj) -> list[str]:
  """A method's or module's own fields (a Linen module's parent and name excluded)."""
  return [f.name for f in dataclasses.fields(obj) if f.name not in ("parent", "name")]


def _same(a, b) -> bool:
  if a is b:
    return True
  try:
    return type(a) is type(b) and bool(a == b)
  except Exception:  # e.g. arrays, whose == is elementwise: equal only when identical
    return False


def varying_fields(objects: list) -> dict[tuple[str, ...], list[float]]:
  """``{path: [value of each object]}`` for every numeric field that differs.

  Walks the dataclass fields of the members' method objects (and the Linen
  modules in them). Raises ConfigError for a differing field that is not a
  number (it would need another program, not a traced value).
  """
  out = {}

  def walk(objs, path):
    first = objs[0]
    if all(_same(first, o) for o in objs[1:]):
      return
    if (
      dataclasses.is_dataclass(first)
      and not isinstance(first, type)
      and all(type(o) is type(first) for o in objs)
    ):
      for name in _fields(first):
        walk([getattr(o, name) for o in objs], path + (name,))
      return
    if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in objs):
      out[path] = [float(o) for o in objs]
      return
    raise ConfigError(
      f"sweep: the members' methods differ in {'.'.join(path) or 'type'}, "
      "which is not a number, so they cannot share one vmapped step; use "
      "--config.train.seed_strategy=unroll"
    )

  walk(objects, ())
  return out


def with_values(method, values: dict[tuple[str, ...], jnp.ndarray]):
  """``method`` with the fields at ``values``' paths set to (traced) scalars."""
  groups = {}
  for path, value in values.items():
    groups.setdefault(path[0], {})[path[1:]] = value
  updates = {}
  for name, rest in groups.items():
    if () in rest:
      updates[name] = rest[()]
    else:
      updates[name] = with_values(getattr(method, name), rest)
  if isinstance(method, nn.Module):
    return method.clone(**updates)
  return dataclasses.replace(method, **updates)


def check_read(method_class, config: ml_collections.ConfigDict, sweep: Sweep, benchmark) -> None:
  """Refuses a swept key the run's method does not read: its method objects built
  with the key's first two values (the other keys at their first) are the same."""
  for key in sweep.keys:
    values = list(dict.fromkeys(s[key] for s in sweep.settings))
    base = dict(sweep.settings[0])
    built = [
      method_class.from_config(setting_config(config, {**base, key: v}), benchmark)
      for v in values[:2]
    ]
    try:
      differs = bool(varying_fields(built)) if len(built) > 1 else True
    except ConfigError:  # a non-numeric difference: the key is read
      differs = True
    if not differs:
      raise ConfigError(
        f"sweep: method {config.method} does not read {key} (its settings "
        "would train the same run); sweep a key the method uses"
      )


# ---- live metrics: each setting's members stream into its own folder ----


class SweepLive:
  """LiveMetrics per setting (WORKDIR/sweep/<label>/live/seed_N/), addressed by member."""

  def __init__(self, workdir: str, sweep: Sweep, seeds: list[int], resume_step: int, enabled: bool):
    self._lives = [
      LiveMetrics(os.path.join(workdir, DIRECTORY, label), seeds, resume_step, enabled)
      for label in sweep.labels
    ]
    self._per = len(seeds)

  def _at(self, member: int) -> tuple[LiveMetrics, int]:
    return self._lives[member // self._per], member % self._per

  def log(self, member: int, entry: dict) -> None:
    live, i = self._at(member)
    live.log(i, entry)

  def evaluation(self, member: int, step: int, task: int, scores: dict) -> None:
    live, i = self._at(member)
    live.evaluation(i, step, task, scores)

  def flush(self) -> None:
    for live in self._lives:
      live.flush()

  def close(self) -> None:
    for live in self._lives:
      live.close()


def member_directory(workdir: str) -> tuple[str, str] | None:
  """``(sweep root, label)`` when ``workdir`` is WORKDIR/sweep/<label> of a sweep run."""
  workdir = os.path.abspath(workdir)
  parent = os.path.dirname(workdir)
  if os.path.basename(parent) != DIRECTORY:
    return None
  root = os.path.dirname(parent)
  if not os.path.isdir(os.path.join(root, "checkpoints")):
    return None
  return root, os.path.basename(workdir)
