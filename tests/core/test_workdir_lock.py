"""A work directory belongs to one program at a time (workdir_lock.py): a second writer is
refused in one line naming the holder and changes nothing; a killed holder's lock is taken
over; readers are not refused."""

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest

from dynamos_jax import workdir_lock
from dynamos_jax.workdir_lock import WorkdirInUse

from conftest import ROOT, subprocess_env

# Another program holding the lock: takes it, says so, sleeps until killed.
HOLD = (
  "import sys, time; from dynamos_jax import workdir_lock; "
  "workdir_lock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"
)


@pytest.fixture
def holder():
  """``holder(workdir)``: a process that holds ``workdir``'s lock (killed at the end)."""
  procs = []

  def start(workdir):
    proc = subprocess.Popen(
      [sys.executable, "-c", HOLD, str(workdir)],
      cwd=ROOT,
      env=subprocess_env(),
      stdout=subprocess.PIPE,
      text=True,
    )
    procs.append(proc)
    assert proc.stdout.readline().strip() == "held"
    return proc

  yield start
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait()


def _snapshot(directory) -> dict:
  """Every path under ``directory`` with its size, modification time and (files) bytes."""
  out = {}
  for where, dirs, files in os.walk(directory):
    for name in dirs + files:
      path = os.path.join(where, name)
      stat = os.stat(path)
      content = open(path, "rb").read() if name in files else None
      out[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns, content)
  return out


def _kill(proc) -> None:
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL


def test_a_second_writer_is_refused_naming_the_holder_and_changes_nothing(tmp_path, holder):
  proc = holder(tmp_path)
  before = _snapshot(tmp_path)
  with pytest.raises(WorkdirInUse) as refused:
    workdir_lock.acquire(str(tmp_path))
  message = str(refused.value)
  assert f"process {proc.pid} on host {socket.gethostname()}" in message, message
  assert "wait for it to end, or stop that process" in message and "\n" not in message
  assert _snapshot(tmp_path) == before  # the holder's details included
  assert list(before) == [workdir_lock.NAME]


def test_a_killed_holders_lock_is_taken_over(tmp_path, holder):
  _kill(holder(tmp_path))
  lock = workdir_lock.acquire(str(tmp_path))  # no cleanup needed
  assert f'"pid": {os.getpid()}' in (tmp_path / workdir_lock.NAME).read_text()
  lock.release()
  # Released: emptied (it names nobody), not deleted, and free for the next program.
  assert (tmp_path / workdir_lock.NAME).read_text() == ""
  workdir_lock.acquire(str(tmp_path)).release()


def test_the_run_command_is_refused_with_exit_2_and_moves_nothing(tmp_path, holder):
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "5").mkdir(parents=True)
  (workdir / "checkpoints" / "5" / "state").write_text("a user's checkpoint")
  proc = holder(workdir)
  before = _snapshot(workdir)
  # resume=False would move the checkpoints aside: a refused run must not. (Tiny, so that
  # a run that is not refused fails the test quickly.)
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "dynamos_jax.run",
      "--config=configs/quickstart.py",
      "--config.resume=False",
      "--config.train.max_steps_per_task=1",
      "--config.warmup.iterations=1",
      "--config.model.nf=8",
      "--config.train.progress=False",
      f"--workdir={workdir}",
    ],
    cwd=ROOT,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and f"is in use by process {proc.pid}" in errors[0], result.stderr
  assert "Traceback" not in result.stderr
  assert _snapshot(workdir) == before


def test_compare_is_refused_before_training(tmp_path, holder, tiny_config, monkeypatch):
  from dynamos_jax import compare

  monkeypatch.setattr(
    "dynamos_jax.trainer.train_and_evaluate",
    lambda *a: pytest.fail("trained in a directory that is in use"),
  )
  proc = holder(tmp_path)
  before = _snapshot(tmp_path)
  with pytest.raises(WorkdirInUse, match=f"process {proc.pid} "):
    compare.run_comparison(tiny_config, ["sgd"], [0], str(tmp_path))
  assert _snapshot(tmp_path) == before


def test_a_run_takes_a_killed_runs_directory_and_readers_are_not_refused(
  tmp_path, holder, tiny_config, tiny_data
):
  from dynamos_jax import evaluate, trainer

  tiny_config.method, tiny_config.epochs = "sgd", 1
  tiny_config.train.max_steps_per_task = 2
  workdir = tmp_path / "run"
  proc = holder(workdir)
  with pytest.raises(WorkdirInUse, match=f"process {proc.pid} "):
    trainer.train_and_evaluate(tiny_config, str(workdir))
  assert os.listdir(workdir) == [workdir_lock.NAME]
  _kill(proc)
  trainer.train_and_evaluate(tiny_config, str(workdir))
  assert (workdir / "results.json").exists()
  assert (workdir / workdir_lock.NAME).read_text() == ""  # released at the end
  # While another program holds the directory, evaluate reads it and writes nothing.
  holder(workdir)
  before = _snapshot(workdir)
  assert evaluate.evaluate_workdir(str(workdir))["step"] == 10
  assert _snapshot(workdir) == before


def test_only_process_0_locks_and_an_error_releases(tmp_path, holder, monkeypatch):
  with pytest.raises(RuntimeError):
    with workdir_lock.hold(str(tmp_path)):
      raise RuntimeError("the run failed")
  workdir_lock.acquire(str(tmp_path)).release()  # released by the error
  holder(tmp_path)
  # The other processes of a multi-host program write nothing and lock nothing.
  monkeypatch.setattr("dynamos_jax.parallel.is_writer", lambda: False)
  with workdir_lock.hold(str(tmp_path)):
    pass
  with workdir_lock.hold(str(tmp_path / "fresh")):
    pass
  assert not (tmp_path / "fresh").exists()


def test_a_filesystem_without_locks_warns_and_runs(tmp_path, monkeypatch, capsys):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

  monkeypatch.setattr(workdir_lock.fcntl, "flock", no_locks)
  assert workdir_lock.acquire(str(tmp_path)) is None
  assert "warning: cannot lock" in capsys.readouterr().err


def test_a_multi_host_program_is_refused_on_every_process(tmp_path, holder):
  from test_multihost import _two_processes

  proc = holder(tmp_path)
  # Process 0 is refused; process 1 hears it from process 0 instead of waiting for it.
  procs = _two_processes(tmp_path)
  for p in procs:
    out = p.communicate(timeout=300)[0]
    assert p.returncode != 0 and f"is in use by process {proc.pid} " in out, out[-3000:]
  assert os.listdir(tmp_path) == [workdir_lock.NAME]
