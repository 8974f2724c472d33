"""The process-wide choice of XLA:CPU's convolution kernels (dynamos_jax.cpu_kernels):
each case in a fresh process, since the flag is read once when JAX starts."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
PROBE = """
import os, jax, dynamos_jax
from dynamos_jax import cpu_kernels, parallel
{before}
jax.numpy.ones(2).block_until_ready()  # the backend starts here
cpu_kernels.configure()  # too late to change anything
print(cpu_kernels.in_use(), repr(os.environ.get("XLA_FLAGS", "")))
"""


def _probe(before: str = "", **env) -> tuple[str, str]:
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
  kernels, flags = done.stdout.split()[-2:]
  return kernels, flags


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
  kernels, flags = _probe(before, **env)
  assert kernels == want
  assert flags.count(FLAG) == (0 if want == "ynnpack" else 1)
