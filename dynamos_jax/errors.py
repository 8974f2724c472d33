"""Errors that reach the user as one line (the CLI prints them and exits with 2)."""


class DynamosError(Exception):
  """Base class: a problem with the user's input, stated with what to change."""


class ConfigError(DynamosError):
  """A config value is missing, unknown or out of range."""


class DataError(DynamosError):
  """Data cannot be found or does not look like the dataset it claims to be."""
