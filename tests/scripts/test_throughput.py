"""speed/throughput.py runs every method's case (toy shapes: the programs, not the timing).

DGM's row comes from speed/dgm_step.py's ``measure`` at its fixed MNIST
shapes (batch 64, 32x32), minutes of CPU in the tests' unoptimised XLA; here
it is replaced by a recorder, so what is tested is that throughput.py asks
for the DGMw iteration at the requested task and turns its figures into a
row. The ResNet and MLP methods run their real steps at toy sizes.
"""

import math
import os
import sys

import pytest

from dynamos_jax import methods

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "speed"))
import throughput  # noqa: E402


def _measure(monkeypatch, extra: list[str]):
  """throughput.main at toy sizes, DGM's measure replaced by a recorder: (cases by method,
  the recorder's calls)."""
  calls = []

  def fake_measure(variant, task, steps, repeats, final_params, loops):
    calls.append((variant, task, final_params, loops))
    return {"iterations_per_s": 2.0, "gflop_per_iteration": 3.0, "compile_s": 1.0}

  monkeypatch.setattr(throughput.dgm_step, "measure", fake_measure)
  cases = throughput.main(
    [
      "--tiny",
      "--strategies=loop",
      "--seeds=1",
      "--steps=1",
      "--repeats=1",
      "--dgm_tasks=1",
      "--peak_gflops=100",
      "--benchmarks=seq-mnist,permuted-mnist,dgm-mnist",
      *extra,
    ]
  )
  for c in cases:
    assert c["steps_per_second"] > 0 and c["flops_per_step"] > 0, c
    # %peak is achieved FLOP/s over the given 100 GFLOP/s.
    assert math.isclose(c["peak_fraction"], c["flops_per_second"] / 100e9), c
  return {c["method"]: c for c in cases}, calls


def test_rows_of_a_replay_an_mlp_and_the_dgm_step(monkeypatch):
  by_method, calls = _measure(monkeypatch, ["--methods=sgd,er,slni,dgm"])
  assert set(by_method) == {"sgd", "er", "slni", "dgm"}
  assert by_method["slni"]["benchmark"] == "permuted-mnist"
  assert by_method["dgm"]["benchmark"] == "dgm-mnist"
  assert calls == [("w", 1, throughput.dgm_step.TARGET["w"], "auto")]
  assert by_method["dgm"]["flops_per_second"] == 6e9
  assert by_method["dgm"]["stream_images_per_second"] == 2.0 * throughput.dgm_step.BATCH
  # Replay methods do more work per step than plain SGD on the same network.
  assert by_method["er"]["flops_per_step"] > by_method["sgd"]["flops_per_step"]
  assert by_method["er"]["replay"] > 0 and by_method["sgd"]["replay"] == 0


@pytest.mark.slow
def test_every_method_has_a_throughput_row(monkeypatch):
  # Every method of the library is measured, or named as sharing another's step.
  measured = set(throughput.DEFAULT_METHODS.split(","))
  same_step = {"joint", "dgm_joint"}
  library = {n for n, cls in methods.REGISTRY.items() if cls.__module__.startswith("dynamos_jax.")}
  assert library - same_step <= measured, library - same_step - measured
  by_method, _ = _measure(monkeypatch, [])
  assert set(by_method) == measured
  assert by_method["dynamos"]["replay"] == 2
