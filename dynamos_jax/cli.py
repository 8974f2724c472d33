"""What the commands share: the --config and --workdir flags, one-line errors.

Flags are defined once here (absl refuses a second definition), so every
command module can be imported next to the others (tests, notebooks).
"""

import sys

from absl import flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file (configs/*.py[:ARG]); run and compare.", lock_config=True
)
WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "The run's directory: where run writes results.json and checkpoints, what "
  "evaluate and analyze read; compare's directory of runs.",
)

SEED = flags.DEFINE_integer(
  "seed",
  None,
  "evaluate and analyze: the seed of a multi-seed run to read (default: every "
  "seed). run and compare take theirs from --config.seed / --config.seeds and --seeds.",
)


def fail(message: str) -> None:
  """Ends the program with a one-line error and exit code 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run_dir_from_flags(argv: list[str]) -> str:
  """The --workdir of a command that reads a run (evaluate, analyze); fails in one line."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}")
  if not WORKDIR.value:
    fail("--workdir is required: the directory of a run")
  return WORKDIR.value


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  return error


def renamed_overrides(argv: list[str]) -> list[str]:
  """``--config.OLD`` overrides of keys that moved (``config.RENAMED``) under their new name."""
  from dynamos_jax.config import RENAMED  # Here, not at the top: `--help` needs no JAX.

  out = []
  for arg in argv:
    name = arg.split("=", 1)[0]
    old = name[len("--config.") :] if name.startswith("--config.") else None
    if old in RENAMED:
      print(f"note: --config.{old} is now --config.{RENAMED[old]}", file=sys.stderr)
      arg = f"--config.{RENAMED[old]}" + arg[len(name) :]
    out.append(arg)
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with flag errors (unknown config keys, bad values) as one line.

  Overrides of keys that moved into a method's namespace keep working.
  """
  argv = renamed_overrides(argv)
  # config_flags finds the --config.KEY overrides in sys.argv, not in argv.
  sys.argv[1:] = argv[1:]
  try:
    argv = flags.FLAGS(argv)
    if CONFIG.value is not None:
      CONFIG.value.keys()  # The config file loads lazily: load it here, inside the try.
    return argv
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError, OSError, SyntaxError) as e:
    cause = _root_cause(e)
    if isinstance(cause, KeyError):  # config_flags: an override of a key that does not exist
      fail(
        f"unknown config key {cause.args[0]!r} in the --config.KEY=VALUE overrides "
        "(all keys and their defaults: dynamos_jax/config.py)"
      )
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    if "Failed loading config file" in str(cause):  # the last line names the file and why
      fail(f"cannot load the --config file: {lines[-1]} (the configs are in configs/*.py)")
    outer = str(e).strip().splitlines()[0] if str(e).strip() else ""
    inner = lines[0] if lines else type(cause).__name__
    message = outer if inner in outer else f"{outer} {inner}".strip()
    fail(f"{message} (all config keys and their defaults: dynamos_jax/config.py)")
