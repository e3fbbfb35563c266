"""Errors the toolkit reports to users as a clear one-line message (the CLI prints them, exit 2)."""
from operators.base import OperatorInputError


class UserError(ValueError):
    """Bad input from the user: the message names the file, field, shape, dtype or option at fault."""


#: everything the CLI reports as a one-line error instead of a traceback
USER_ERRORS = (UserError, OperatorInputError)
