"""Golden outputs: today's code gives, bit for bit, what a recorded commit gave (every
method, Dynamos's default step, two seeds in one program, MNIST-360, SLNI, DGMw and DGMa;
the runs of ``golden.runs``), and ``golden.compare`` names every difference.

Each file tests/golden/quickstart_nf8*.json was recorded under the tests' JAX settings with

  JAX_DISABLE_MOST_OPTIMIZATIONS=1 python reproduce/golden.py record \
      --out=tests/golden/FILE.json --steps=4 --set model.nf=8 --set model.mlp_reduction=4

and holds each run's accuracy matrices, every logged metric and a digest of every array
of its final checkpoint. XLA picks other kernels on another instruction set or backend,
so the floats are only comparable on the kind of machine that recorded them: each file
pins one kind, and a machine of another kind skips the golden runs with that reason
(record a file there with the command above, from a package named below, to pin it).

- quickstart_nf8.json (AMD EPYC Zen 3, AVX2) and quickstart_nf8_avx512.json (AMD EPYC
  Zen 4, AVX-512): recorded on CPU from commit 1c80cf1 (whose package is 83e3390's) in
  format 1, the quick-start runs only; ``golden.upgrade`` reads them as recorded (backend
  cpu, model.agent_moments off in every run).
- quickstart_nf8_intel_amx.json (Intel Xeon, AVX-512 and AMX): recorded on CPU in format
  2 from the package of commit da4465a, every run of ``golden.runs``; dgmw and dgma
  re-recorded from d630d10's, which computes the initial state in one compiled program
  (D's initial kernels moved by at most one ulp), and again from a8c1e27's, which computes
  D's strided and G's transposed convolutions as stride-1 convolutions (dgm.conv=auto).
  Every run re-recorded from a49d540's package, which made Eigen's convolutions and dots
  the default (907b082, ``cpu_kernels``; every run's digests moved, its convolution and dot sums
  being rounded in another order); the earlier recording, with YNNPACK's, still passed
  at that commit under ``DYNAMOS_JAX_CPU_CONVOLUTIONS=ynnpack``.
- A file recorded with other CPU convolution kernels than this process's (the AMD files:
  YNNPACK's) is checked in a subprocess under its own (``golden.py check``).

The unit tests of ``compare``, ``machine`` and ``upgrade`` run no training; the golden
runs are marked slow.
"""

import copy
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_script, subprocess_env

golden = load_script("golden", "reproduce", "golden.py")


def _golden_files() -> list[tuple[str, dict]]:
  files = []
  for path in sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "quickstart_nf8*.json"))):
    with open(path) as f:
      files.append((path, golden.upgrade(json.load(f))))
  return files


def _kind(machine: dict) -> dict:
  """The machine without its CPU convolution kernels, which ``golden.py check`` sets."""
  return {k: v for k, v in machine.items() if k != "cpu_convolutions"}


def _recorded() -> tuple[str, dict]:
  """The golden file of this machine's kind (else the first, whose tests then skip)."""
  files, here = _golden_files(), _kind(golden.machine())
  return next((f for f in files if _kind(f[1]["machine"]) == here), files[0])


RECORDED_PATH, RECORDED = _recorded()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECORDED["runs"]))
def test_run_equals_its_golden_output(name):
  here = golden.machine()
  if _kind(RECORDED["machine"]) != _kind(here):
    pytest.skip(
      f"golden outputs recorded on {RECORDED['machine']}, this is "
      f"{here}: floats differ between machine kinds"
    )
  want = RECORDED["runs"][name]
  if RECORDED["machine"].get("cpu_convolutions") == here.get("cpu_convolutions"):
    assert golden.compare(name, want, golden.record_one(want["overrides"])) == []
    return
  # Recorded with the other convolution kernels, an XLA flag this process cannot change.
  command = [sys.executable, os.path.join(ROOT, "reproduce", "golden.py"), "check"]
  done = subprocess.run(
    [*command, RECORDED_PATH, f"--only={name}"],
    env=subprocess_env(),
    capture_output=True,
    text=True,
    check=False,
  )
  assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def _run(loss=0.5, entries=2, runs=1) -> dict:
  """A fabricated record_one result: ``runs`` seeds of ``entries`` log entries."""
  log = [{"step": 4 * (j + 1), "task": j + 1, "loss": loss + j} for j in range(entries)]
  one = {
    "log": log,
    "class_il": {"matrix": [[10.0, 20.0]], "before": [10.0]},
    "task_il": {"matrix": [[50.0, 60.0]], "before": [50.0]},
  }
  return {
    "overrides": {"method": "sgd"},
    "runs": [copy.deepcopy(one) for _ in range(runs)],
    "digests": {"learner.params.w": "a", "learner.opt_state.0": "b", "key": "c"},
  }


def test_compare_finds_nothing_in_equal_runs():
  assert golden.compare("x", _run(runs=2), _run(runs=2)) == []


def test_compare_reads_arrays_by_name_without_the_container_prefix():
  got = _run()
  got["digests"] = {"state.method.params.w": "a", "method.opt_state.0": "b", "key": "c"}
  assert golden.compare("x", _run(), got) == []


def test_compare_reports_a_truncated_log():
  problems = golden.compare("x", _run(entries=3), _run(entries=2))
  assert problems == ["x run 0: 3 log entries recorded, 2 now"]
  assert golden.compare("x", _run(entries=2), _run(entries=3))


def test_compare_reports_a_missing_run():
  assert golden.compare("x", _run(runs=2), _run(runs=1)) == ["x: 2 runs recorded, 1 now"]
  assert golden.compare("x", _run(runs=1), _run(runs=2))


def test_compare_reports_an_array_on_one_side_only():
  got = _run()
  del got["digests"]["learner.opt_state.0"]
  assert golden.compare("x", _run(), got) == ["x: array opt_state.0 no longer saved"]
  got = _run()
  got["digests"]["learner.buffer.count"] = "d"
  assert golden.compare("x", _run(), got) == ["x: array buffer.count not recorded"]


def test_compare_reports_a_key_on_one_side_only():
  got = _run()
  del got["runs"][0]["task_il"]
  assert golden.compare("x", _run(), got) == ["x run 0: task_il missing"]
  got = _run()
  got["runs"][0]["gcl"] = 12.5
  assert golden.compare("x", _run(), got) == ["x run 0: gcl not recorded"]
  got = _run()
  del got["runs"][0]["log"][1]["loss"]
  assert golden.compare("x", _run(), got) == ["x run 0 log entry 1: ['loss']"]


def test_compare_reports_a_changed_value():
  assert golden.compare("x", _run(), _run(loss=0.5 + 1e-7)) == ["x run 0 log entry 0: ['loss']"]
  got = _run()
  got["runs"][0]["class_il"]["matrix"][0][1] = 20.000001
  assert golden.compare("x", _run(), got) == ["x run 0: class_il differs"]
  got = _run()
  got["digests"]["learner.params.w"] = "z"
  assert golden.compare("x", _run(), got) == ["x: array params.w differs"]


def test_machine_names_the_backend():
  import jax

  here = golden.machine()
  assert here["backend"] == jax.default_backend()
  # Off CPU the device decides the floats; a GPU host's CPU may match a CPU recording.
  assert ("device" in here) == (here["backend"] != "cpu")
  # On CPU, so do XLA:CPU's convolution kernels.
  assert ("cpu_convolutions" in here) == (here["backend"] == "cpu")


def test_a_format_1_file_reads_as_recorded_on_cpu_with_the_flax_agents():
  import numpy as np

  zero, one = golden.digest(np.int32(0)), golden.digest(np.int32(1))
  old = {
    "machine": {"cpu": "AMD EPYC", "isa": ["avx2"], "jax": "0.10.2", "jaxlib": "0.10.2"},
    "steps": 4,
    "runs": {
      "sgd": {
        "overrides": {"method": "sgd", "model.nf": 8},
        "digests": {"buffer.num_seen": zero, "params.w": zero},
      },
      "er": {"overrides": {"method": "er"}, "digests": {"learner.buffer.num_seen": one}},
      "mnist360": {"overrides": {"method": "dynamos"}, "digests": {"buffer.num_seen": zero}},
    },
  }
  new = golden.upgrade(old)
  assert new["format"] == golden.FORMAT
  assert new["machine"]["backend"] == "cpu"
  assert new["machine"]["cpu_convolutions"] == "ynnpack"  # XLA's default then
  assert new["runs"]["sgd"]["overrides"] == {
    "method": "sgd",
    "model.nf": 8,
    "model.agent_moments": False,
  }
  # The unused buffer's counter (int32 0) is no longer saved; a used one still is, 0 or not.
  assert new["runs"]["sgd"]["digests"] == {"params.w": zero}
  assert new["runs"]["er"]["digests"] == {"learner.buffer.num_seen": one}
  assert new["runs"]["mnist360"]["digests"] == {"buffer.num_seen": zero}
  assert "backend" not in old["machine"]  # a copy
  assert golden.upgrade(new) == new
  with pytest.raises(ValueError, match="newer"):
    golden.upgrade(dict(new, format=golden.FORMAT + 1))


def test_the_files_record_the_same_arrays_and_entries():
  """Read through ``upgrade``, the files of every machine kind hold the same runs, log
  entries, results and arrays (only their numbers differ), so ``compare`` may be strict."""

  def shape(run):
    return (
      [[[sorted(e) for e in r["log"]], sorted(r)] for r in run["runs"]],
      sorted(golden.normalised(run["digests"])),
    )

  files = [recorded for _, recorded in _golden_files()]
  for recorded in files[1:]:
    for name in set(files[0]["runs"]) & set(recorded["runs"]):
      assert shape(recorded["runs"][name]) == shape(files[0]["runs"][name]), name


def test_every_golden_file_replays_the_runs_of_today():
  """Each recorded run's overrides are today's ``runs`` of that name (a renamed key or a
  changed run would otherwise replay a config nobody records any more)."""
  for _, recorded in _golden_files():
    extra = {"model.nf": 8, "model.mlp_reduction": 4}
    today = golden.runs(recorded["steps"], extra)
    for name, run in recorded["runs"].items():
      assert run["overrides"] == today[name], name
