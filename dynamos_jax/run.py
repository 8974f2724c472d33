"""Command line: ``python -m dynamos_jax.run --config=configs/NAME.py --workdir=DIR``.

Any config key can be overridden with ``--config.KEY=VALUE``;
``--config.sweep="dynamos.alpha=0.1,0.5;lr=0.05,0.1"`` trains a grid of settings
in one program (sweep.py). Bad input ends with a one-line message and exit code 2.
"""

import sys

from absl import app, logging

from dynamos_jax.cli import CONFIG, SEED, WORKDIR, fail, parse_flags
from dynamos_jax.errors import InputError


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; use --config=FILE --workdir=DIR [--config.KEY=VALUE]")
  if CONFIG.value is None:
    fail("--config is required, e.g. --config=configs/quickstart.py")
  if WORKDIR.value is None:
    fail("--workdir is required: the directory to write results.json to")
  if SEED.value is not None:
    fail("run takes its seed from --config.seed=N (or several: --config.seeds=0,1,2), not --seed")
  # Library INFO logs (orbax's per-save records, JAX's backend probing) drown
  # the progress bar; warnings and errors still show.
  logging.set_verbosity(logging.WARNING)
  # Imported after flag parsing so `--help` and flag errors are quick.
  from dynamos_jax import config as config_lib
  from dynamos_jax import parallel, sweep, trainer

  try:
    config_lib.validate(CONFIG.value)
    sweep.validate(CONFIG.value)  # each setting's config too, before anything trains
    parallel.start(CONFIG.value)
    trainer.train_and_evaluate(CONFIG.value, WORKDIR.value)
  except trainer.Interrupted as e:
    print(str(e), file=sys.stderr)
    sys.exit(e.exit_code)
  except InputError as e:
    fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
