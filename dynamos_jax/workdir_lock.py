"""The lock that makes a work directory belong to one program at a time.

A program that writes into a work directory holds an advisory ``flock`` on
``WORKDIR/.dynamos_jax.lock`` for as long as it writes there: training (``run``,
and each run that ``compare`` trains) on the run's directory, ``compare`` also on
its directory of runs. A sweep or a multi-seed run is one program: one lock.
Another program that would write there is refused in one line that names the
holder (process id, host, command, start time: the holder writes them into the
file). The kernel drops the lock when its process ends, however it ends, so a
killed run's lock is taken by the next one: no lock is ever stale. Commands
that only read (``evaluate``, ``analyze``, whose ``analysis/`` no run writes)
take no lock.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from dynamos_jax.errors import InputError

NAME = ".dynamos_jax.lock"  # Hidden, and not results: nothing reads it but this module.
_MESSAGE_BYTES = 1024  # The longest refusal that process 0 passes to the others.


class WorkdirInUse(InputError):
  """Another live program holds the work directory's lock."""


class Lock:
  """A held lock; ``release`` gives it back (the end of the process does too)."""

  def __init__(self, fd: int, path: str):
    self.fd, self.path = fd, path

  def release(self) -> None:
    if self.fd < 0:
      return
    # Emptied rather than deleted: deleting it would let a newcomer lock a fresh
    # file under the same name while another program locks the deleted one.
    os.ftruncate(self.fd, 0)
    fcntl.flock(self.fd, fcntl.LOCK_UN)
    os.close(self.fd)
    self.fd = -1


def _holder(fd: int, path: str, workdir: str) -> str:
  """The refusal's text, from the details the holder wrote into the file."""
  # The holder writes its details right after it takes the lock: wait briefly
  # for them rather than report an empty file.
  for _ in range(20):
    raw = os.pread(fd, 4096, 0)
    if raw:
      break
    time.sleep(0.05)
  try:
    h = json.loads(raw)
    who = f"process {h['pid']} on host {h['host']} ({h['command']}, started {h['started']})"
  except (ValueError, KeyError, TypeError):
    who = f"another process (its details in {path} are not readable)"
  return (
    f"{workdir} is in use by {who}; wait for it to end, or stop that process (a stopped "
    "run resumes from its checkpoint), or choose another --workdir"
  )


def _command() -> str:
  """This program's command line, shortened: ``python -m dynamos_jax.run --config=...``."""
  program = sys.argv[0] if sys.argv and sys.argv[0] else "python"
  package, module = os.path.split(os.path.splitext(program)[0])
  program = (
    f"python -m dynamos_jax.{module}"
    if os.path.basename(package) == "dynamos_jax"
    else os.path.basename(program)
  )
  return " ".join([program, *sys.argv[1:]])[:200]


def acquire(workdir: str) -> Lock | None:
  """Takes ``workdir``'s lock for this process, creating the directory if needed.

  Returns None (after a one-line warning) where the filesystem cannot lock.

  Raises:
    WorkdirInUse: another live process holds it; nothing in ``workdir`` was changed.
    InputError: ``workdir`` cannot be created or written to.
  """
  path = os.path.join(workdir, NAME)
  try:
    os.makedirs(workdir, exist_ok=True)
    # No O_TRUNC: a refused process must leave the holder's details as they are.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise InputError(
      f"--workdir={workdir} cannot be a run directory ({e.strerror or e}); "
      "choose a directory you can write to"
    ) from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    message = _holder(fd, path, workdir)
    os.close(fd)
    raise WorkdirInUse(message) from None
  except OSError as e:  # A filesystem without locks (some network ones): run unguarded.
    os.close(fd)
    print(
      f"warning: cannot lock {path} ({e.strerror or e}); make sure no other program "
      f"writes into {workdir} meanwhile",
      file=sys.stderr,
    )
    return None
  details = {
    "pid": os.getpid(),
    "host": socket.gethostname(),
    "command": _command(),
    "started": datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
  }
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(details).encode(), 0)
  return Lock(fd, path)


def _from_process_0(message: str) -> str:
  """Process 0's ``message`` on every process of a multi-host run (a collective)."""
  from jax.experimental import multihost_utils
  import numpy as np

  data = np.zeros(_MESSAGE_BYTES, np.uint8)
  raw = message.encode()[:_MESSAGE_BYTES]
  data[: len(raw)] = np.frombuffer(raw, np.uint8)
  out = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(out).rstrip(b"\0").decode(errors="replace")


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock inside the ``with`` block; refuses as ``acquire`` does.

  In a multi-host run every process must enter it (it is a collective there).
  """
  import jax

  from dynamos_jax import parallel

  lock, error = None, None
  # Process 0 alone locks for the whole program: it is the one that writes
  # (parallel.is_writer), and processes of one program locking one directory
  # on a shared filesystem (or one host, as in tests/test_multihost.py) would
  # refuse each other.
  if parallel.is_writer():
    try:
      lock = acquire(workdir)
    except InputError as e:
      error = e
  if jax.process_count() > 1:
    # The others stop with process 0's message instead of waiting at the next
    # barrier for a process that has left.
    message = _from_process_0("" if error is None else str(error))
    if message and error is None:
      error = InputError(message)
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
