"""Errors that reach the user as one line (the CLI prints them and exits with 2)."""


class InputError(Exception):
  """Base class: a problem with the user's input, stated with what to change."""


# The base's earlier name, kept so that code written against it still catches every error.
DynamosError = InputError


class ConfigError(InputError):
  """A config value is missing, unknown or out of range."""


class DataError(InputError):
  """Data cannot be found or does not look like the dataset it claims to be."""


def require(ok: bool, message: str, error: type[InputError] = None) -> None:
  """Raises ``error`` (default ``ConfigError``) with ``message`` unless ``ok``.

  ``message`` is the one line the user reads: what is wrong and what to do.
  """
  if not ok:
    raise (error or ConfigError)(message)
