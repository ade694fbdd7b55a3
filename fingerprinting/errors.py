"""The errors a user can fix, told apart from bugs.

Every error the project raises where it detects bad input (a config value, a
path, a tampered file, a suspect that answers garbage) derives from
`UserError`; the entry points print such an error as one line and exit with
status 2. Anything else is a bug: it keeps its traceback and exit status 1.
Each class also derives from the built-in exception it refines, so code that
catches `ValueError` or `OSError` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, described in a message meant for the person who gave it."""


class ConfigError(UserError, ValueError):
    """A config field, flag or argument that is unknown or out of range."""


class StorageError(UserError, OSError):
    """A file or directory the user named cannot be read or written."""


class SuspectError(UserError, ValueError):
    """A suspect that cannot be queried, or that answers something other than labels."""
