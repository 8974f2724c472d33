"""Golden outputs: today's code gives, bit for bit, what the code before the
method-lifecycle change gave (every method, two seeds in one program, MNIST-360).

tests/golden/quickstart_nf8.json was recorded by the earlier code (commit
83e3390) under the tests' JAX settings with

  JAX_DISABLE_MOST_OPTIMIZATIONS=1 python reproduce/golden.py record \
      --out=tests/golden/quickstart_nf8.json --steps=4 --set model.nf=8 --set model.mlp_reduction=4

and holds each run's accuracy matrices, every logged metric and a digest of
every array of its final checkpoint. XLA:CPU picks other kernels on another
instruction set, so the floats are only comparable on the kind of CPU that
recorded them: each file of tests/golden/quickstart_nf8*.json pins one kind
(quickstart_nf8.json: AMD EPYC Zen 3, AVX2; quickstart_nf8_avx512.json: AMD
EPYC Zen 4, AVX-512; both recorded from commit 1c80cf1, whose package is
83e3390's), and a machine of another kind skips these tests with that reason
(record a file there from 1c80cf1 to pin it).
"""

import glob
import json
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "reproduce"))
import golden  # noqa: E402


def _recorded() -> dict:
  """The golden file of this machine's kind (else the first, whose tests then skip)."""
  files = []
  for path in sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "quickstart_nf8*.json"))):
    with open(path) as f:
      files.append(json.load(f))
  return next((g for g in files if g["machine"] == golden.machine()), files[0])


RECORDED = _recorded()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECORDED["runs"]))
def test_run_equals_its_golden_output(name):
  if RECORDED["machine"] != golden.machine():
    pytest.skip(f"golden outputs recorded on {RECORDED['machine']}, this is "
                f"{golden.machine()}: floats differ between CPU kinds")
  want = RECORDED["runs"][name]
  got = golden.record_one(want["overrides"])
  assert golden.compare(name, want, got) == []
  # The comparison can fail: one changed array, one changed log value are caught.
  array = next(iter(got["digests"]))
  assert golden.compare(name, want, dict(got, digests={**got["digests"], array: "0"}))
  log = [dict(e) for e in got["runs"][0]["log"]]
  log[-1]["loss"] += 1e-7
  runs = [dict(got["runs"][0], log=log)] + got["runs"][1:]
  assert golden.compare(name, want, dict(got, runs=runs))
