"""The exception type of bad user input, shared by the library and its entry points.

A `UserError` is a problem with what the user gave (a file, a flag, a config value); its
message is one line naming that input and what to do. The entry points print it as
`error: ...` and exit with status 2 (`experiments.cli.reports_user_errors`); any other exception
is a bug in flaxgan and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InvalidArgument", "UserError"]


class UserError(Exception):
    """Base of the user-input errors; combined with a builtin type by the concrete errors
    (`SnapshotError` is also a `ValueError`, a missing weight file a `FileNotFoundError`)."""


class InvalidArgument(UserError, ValueError):
    """A value of the wrong type or out of range (a `ValueError`, as before this type)."""
