"""Shared fixtures: a tiny synthetic dataset and a tiny Dynamos config."""

import contextlib
import io
import os
import sys

import numpy as np
import pytest

from dynamos_jax import chunks
from dynamos_jax.data import sources

# The toy method of docs/design.md#adding-a-method registers itself: every
# test that runs "every method" runs it too.
import toy_method  # noqa: F401,E402

# The repository's root: configs/, the scripts' folders (speed/, reproduce/, reference/).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str, *parts: str):
  """The module at ROOT/<parts...>, imported by path under ``name``: the scripts' folders
  are no packages, and several have a module named refdata."""
  import importlib.util

  path = os.path.join(ROOT, *parts)
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_dataset(per_class: int = 12, test_per_class: int = 4, size: int = 8):
  """10 classes of 8x8x3 uint8 images whose brightness pattern encodes the class.

  Noise in [0, 40) plus, for class c, a bright row ``c % size`` raised by
  120 + 10 c: at most 39 + 210 = 249, so nothing wraps in uint8, and classes
  that share a row (c and c + 8 at size 8) differ by 80 in its brightness, more
  than the noise's range.
  """
  rng = np.random.default_rng(0)

  def make(n):
    labels = np.repeat(np.arange(10, dtype=np.int32), n)
    images = rng.integers(0, 40, (len(labels), size, size, 3))
    for c in range(10):  # A bright row per class makes the task learnable.
      images[labels == c, c % size, :, :] += 120 + 10 * c
    # A value over 255 would wrap in the cast and scramble the class pattern.
    assert 0 <= images.min() and images.max() <= 255, images.max()
    return images.astype(np.uint8), labels

  train_x, train_y = make(per_class)
  test_x, test_y = make(test_per_class)
  return sources.ArrayDataset("mnist", train_x, train_y, test_x, test_y, 10)


@pytest.fixture
def tiny_data(monkeypatch):
  """Makes every run load the tiny dataset instead of MNIST."""
  dataset = tiny_dataset()
  monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: dataset)
  return dataset


@pytest.fixture
def use_tiny_dataset(monkeypatch):
  """``use_tiny_dataset(**sizes)``: makes every run load a tiny dataset of that size."""

  def use(**sizes):
    dataset = tiny_dataset(**sizes)
    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    return dataset

  return use


@pytest.fixture(scope="session")
def dgm_two_task_run(tmp_path_factory):
  """dgm_two_tasks.run on the tiny dataset, once per worker: the modules that read it
  share the xdist group "dgm" (one worker)."""
  import dgm_two_tasks

  return dgm_two_tasks.run(str(tmp_path_factory.mktemp("dgm_two") / "run"), tiny_dataset())


@pytest.fixture
def tiny_config():
  from dynamos_jax.config import base_config

  c = base_config()
  c.data.source = "bundled"
  c.buffer_size = 8
  c.batch_size = 5
  c.minibatch_size = 4
  c.model.nf = 8
  c.model.mlp_reduction = 4
  c.dynamos.warmup.iterations = 3
  c.epochs = 2
  c.train.chunk_size = 4
  c.train.progress = False
  c.train.eval_batch_size = 16
  return c


# The tests' compiled programs, in the checkout (.cache/ is ignored by git) rather than
# under TMPDIR: a run given a fresh TMPDIR still reuses what its first tests compiled, in
# every worker and subprocess, and a fresh clone starts cold.
XLA_CACHE = os.path.join(ROOT, ".cache", "xla")


class Crash(Exception):
  """A simulated crash of a run (``crash_in_chunk``)."""


def crash_in_chunk(monkeypatch, chunk: int) -> None:
  """Makes the ``chunk``-th call of ChunkRunner.run raise ``Crash`` after running (a crash
  between checkpoints, for resume tests)."""
  original, calls = chunks.ChunkRunner.run, {"n": 0}

  def run(self, *args):
    out = original(self, *args)
    calls["n"] += 1
    if calls["n"] == chunk:
      raise Crash()
    return out

  monkeypatch.setattr(chunks.ChunkRunner, "run", run)


def run_command(main, argv: list[str]) -> tuple[int, str]:
  """A command's ``main`` (dynamos_jax.run, evaluate, analyze, compare) run in this process
  as ``app.run`` runs it, flags parsed by cli.parse_flags: (exit code, stderr).

  One subprocess per command checks the real exit (tests/core/test_cli.py); the other
  one-line errors are checked here, without a new interpreter and JAX import each.
  """
  from absl import flags

  from dynamos_jax import cli

  saved, err, code = list(sys.argv), io.StringIO(), 0
  try:
    with contextlib.redirect_stderr(err):
      main(cli.parse_flags(["prog", *argv]))
  except SystemExit as e:
    code = e.code
  finally:
    sys.argv[:] = saved
    # The next command starts from the defaults, without the --config.KEY flags that
    # parsing this one defined (a process parses once; defining them again is an error).
    for name in [n for n in flags.FLAGS if n.startswith(f"{cli.CONFIG.name}.")]:
      delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
  return code, err.getvalue()


def subprocess_env(**extra) -> dict[str, str]:
  """The environment of a test's subprocess: the JAX settings of pytest_configure."""
  return dict(
    os.environ,
    JAX_DISABLE_MOST_OPTIMIZATIONS="1",
    JAX_COMPILATION_CACHE_DIR=XLA_CACHE,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    **extra,
  )


# XLA:CPU's legacy elemental emitters compile the tests' tiny programs in about half the
# time of its fusion emitters. They round some elementwise functions differently, so the
# golden outputs (recorded with XLA's defaults, slow tier) run without this flag.
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def pytest_configure(config):
  if config.getoption("markexpr") == "not slow":  # the fast tier, pyproject's addopts
    # Before any backend starts; subprocesses inherit it (subprocess_env).
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAG}".strip()
  # Tiny models: compile time dominates, and XLA's optimisations do not pay for themselves.
  import jax

  jax.config.update("jax_disable_most_optimizations", True)
  # Many tests compile the same tiny programs: keep the executables on disk, so a
  # program is compiled once per machine (the cache changes no number).
  jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
