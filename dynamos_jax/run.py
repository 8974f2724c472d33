"""Command line: ``python -m dynamos_jax.run --config=configs/NAME.py --workdir=DIR``.

Any config key can be overridden with ``--config.KEY=VALUE``. Bad input ends
with a one-line message and exit code 2.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from dynamos_jax.errors import DynamosError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json (and checkpoints).")


def fail(message: str) -> None:
  """Ends the program with a one-line error and exit code 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _root_cause(error: BaseException) -> BaseException:
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  return error


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with flag errors (unknown config keys, bad values) as one line."""
  try:
    argv = flags.FLAGS(argv)
    if _CONFIG.value is not None:
      _CONFIG.value.keys()  # The config file loads lazily: load it here, inside the try.
    return argv
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError, OSError,
          SyntaxError) as e:
    cause = _root_cause(e)
    if isinstance(cause, KeyError):  # config_flags: an override of a key that does not exist
      fail(f"unknown config key {cause.args[0]!r} in the --config.KEY=VALUE overrides "
            "(all keys and their defaults: dynamos_jax/config.py)")
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    if "Failed loading config file" in str(cause):  # the last line names the file and why
      fail(f"cannot load the --config file: {lines[-1]} (the configs are in configs/*.py)")
    outer = str(e).strip().splitlines()[0] if str(e).strip() else ""
    inner = lines[0] if lines else type(cause).__name__
    message = outer if inner in outer else f"{outer} {inner}".strip()
    fail(f"{message} (all config keys and their defaults: dynamos_jax/config.py)")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; use --config=FILE --workdir=DIR [--config.KEY=VALUE]")
  if _CONFIG.value is None:
    fail("--config is required, e.g. --config=configs/quickstart.py")
  if _WORKDIR.value is None:
    fail("--workdir is required: the directory to write results.json to")
  # Library INFO logs (orbax's per-save records, JAX's backend probing) drown
  # the progress bar; warnings and errors still show.
  logging.set_verbosity(logging.WARNING)
  # Imported after flag parsing so `--help` and flag errors are quick.
  from dynamos_jax import config as config_lib
  from dynamos_jax import train
  try:
    config_lib.validate(_CONFIG.value)
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except train.Interrupted as e:
    print(str(e), file=sys.stderr)
    sys.exit(e.exit_code)
  except DynamosError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
