"""Errors the toolkit reports to users as a clear one-line message (the CLI prints them, exit 2)."""
from operators.base import OperatorInputError


class UserError(ValueError):
    """Bad input from the user: the message names the file, field, shape, dtype or option at fault."""


#: everything the CLI reports as a one-line error instead of a traceback
USER_ERRORS = (UserError, OperatorInputError)


class RunMismatch(UserError):
    """A saved state (checkpoint, IMP round, transfer case/mask) belongs to another run: its identity
    differs from this run's. ``keys``: the differing identity keys (dotted), ``path``: the file."""

    def __init__(self, message, keys=(), path=None):
        super().__init__(message)
        self.keys, self.path = list(keys), path


class StateFileError(UserError):
    """A state file that is not a readable mri_oes state file (garbage, wrong format, bad tree)."""
