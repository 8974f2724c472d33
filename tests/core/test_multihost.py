"""Multi-host: two processes on this machine (jax.distributed with a localhost
coordinator, CPU collectives through gloo) shard the seed axis across both and
give exactly the results of one process; killed mid-run, both resume."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, subprocess_env

# Three processes train (one alone, then two killed and resumed): the slow tier.
# test_seeds.py's one-process distributed start is the fast tier's.
pytestmark = pytest.mark.slow

SCRIPT = os.path.join(ROOT, "tests", "core", "multihost_run.py")


def _env(**extra):
  env = subprocess_env(JAX_PLATFORMS="cpu", **extra)  # the tests' compilation cache included
  env.pop("XLA_FLAGS", None)
  return env


def _two_processes(workdir, pause=0.0):
  with socket.socket() as s:  # A free port for the coordinator.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return [
    subprocess.Popen(
      [sys.executable, SCRIPT, str(workdir), str(pause)],
      cwd=ROOT,
      env=_env(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)
      ),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]


def _finish(procs):
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _results(workdir):
  results = json.loads((workdir / "results.json").read_text())
  return results["runs"], results["summary"]


def test_two_processes_equal_one_and_resume_after_a_kill(tmp_path):
  one = subprocess.run(
    [sys.executable, SCRIPT, str(tmp_path / "one")],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert one.returncode == 0, one.stderr[-3000:]

  # Two processes killed mid-run (after the first checkpoint, before the end), then both
  # resume and finish the sharded program: the results of one process, exactly.
  workdir = tmp_path / "killed"
  procs = _two_processes(workdir, pause=0.5)
  deadline = time.time() + 300
  # Until the first checkpoint is complete (Orbax renames STEP.orbax-checkpoint-tmp-* to STEP).
  complete = lambda: [
    p for p in glob.glob(str(workdir / "checkpoints" / "[0-9]*")) if os.path.basename(p).isdigit()
  ]
  while time.time() < deadline and not complete():
    time.sleep(0.1)
  assert all(p.poll() is None for p in procs), "the run ended before it could be killed"
  for p in procs:
    p.send_signal(signal.SIGKILL)
  assert [p.wait() for p in procs] == [-signal.SIGKILL] * 2
  assert not (workdir / "results.json").exists()  # it was killed before the end
  outs = _finish(_two_processes(workdir))
  assert all("resuming from step" in out for out in outs)  # resumed, not restarted
  assert all("x 2 seeds" in out for out in outs)  # both processes trained the program
  assert _results(workdir) == _results(tmp_path / "one")
