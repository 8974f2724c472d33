"""The process-wide settings made before JAX compiles: XLA:CPU's convolution kernels
(dynamos_jax.cpu_kernels) and the persistent compilation cache (parallel.start):
each case in a fresh process, since the flag is read once when JAX starts."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
PROBE = """
import json, os, jax, dynamos_jax
from dynamos_jax import cpu_kernels, parallel
{before}
jax.numpy.ones(2).block_until_ready()  # the backend starts here
cpu_kernels.configure()  # too late to change anything
flags = os.environ.get("XLA_FLAGS", "")
print(json.dumps([cpu_kernels.in_use(), flags, cpu_kernels.rolled_loops_slow()]))
"""


def _probe(before: str = "", **env) -> tuple[str, str, bool, str]:
  """(kernels in use, XLA_FLAGS, rolled_loops_slow(), stderr) of a fresh process."""
  clean = {
    k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "DYNAMOS_JAX_CPU_CONVOLUTIONS")
  }
  done = subprocess.run(
    [sys.executable, "-c", PROBE.format(before=before)],
    env={**clean, **env},
    capture_output=True,
    text=True,
    check=True,
    cwd=ROOT,
  )
  kernels, flags, slow = json.loads(done.stdout.strip().splitlines()[-1])
  return kernels, flags, slow, done.stderr


@pytest.mark.parametrize(
  "env, before, want",
  [
    ({}, "", "eigen"),  # the default: Eigen's multi-threaded convolutions
    ({"DYNAMOS_JAX_CPU_CONVOLUTIONS": "ynnpack"}, "", "ynnpack"),  # XLA's own default
    ({}, "parallel.use_host_devices(2)", "ynnpack"),  # a core per device: YNNPACK's
    ({"XLA_FLAGS": f"{FLAG}="}, "", f"{FLAG}="),  # the user's flag is left alone
  ],
)
def test_the_kernels_are_chosen_once_before_jax_starts(env, before, want):
  kernels, flags, slow, _ = _probe(before, **env)
  assert kernels == want
  assert flags.count(FLAG) == (0 if want == "ynnpack" else 1)
  # DGM's loops=auto scans only where convolution gradients in a loop are fast (Eigen's).
  assert slow == (want != "eigen")


def test_an_unknown_kernel_choice_warns_and_keeps_the_default():
  kernels, _, _, err = _probe(DYNAMOS_JAX_CPU_CONVOLUTIONS="onednn")
  assert kernels == "eigen"
  assert "DYNAMOS_JAX_CPU_CONVOLUTIONS='onednn' is not one of" in err


CACHE_PROBE = """
import os, sys, jax
from dynamos_jax import parallel
from dynamos_jax.errors import InputError
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
try:
  parallel.use_compilation_cache(sys.argv[1])
except InputError as e:
  print("InputError", e)
  raise SystemExit(0)
jax.jit(lambda x: x * 2 + 1)(jax.numpy.ones(3)).block_until_ready()
print("cache", jax.config.jax_compilation_cache_dir)
"""


def _cache_probe(directory: str) -> str:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  done = subprocess.run(
    [sys.executable, "-c", CACHE_PROBE, directory],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    cwd=ROOT,
  )
  return done.stdout.strip().splitlines()[-1]


def test_the_compilation_cache_keeps_compiled_programs_in_the_configured_directory(tmp_path):
  cache = tmp_path / "nested" / "xla"
  assert _cache_probe(str(cache)) == f"cache {cache}"
  assert any(cache.iterdir())  # the jitted program was written there
  assert _cache_probe("") == "cache None"  # "" turns it off


def test_an_unusable_compilation_cache_is_a_one_line_input_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  out = _cache_probe(str(blocker / "xla"))
  assert out.startswith("InputError train.compilation_cache=")
  assert "--config.train.compilation_cache=" in out
