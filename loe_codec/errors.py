"""Exceptions the public API raises for problems a user can fix.

The CLI maps :class:`UsageError` (bad arguments or input) to exit code 2 and
:class:`CodecRuntimeError` (something failed while working) to exit code 1.
"""


class LoeError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1


class UsageError(LoeError, ValueError):
    """Bad input or arguments: a missing file, a region outside the image, a bad value."""

    exit_code = 2


class FormatError(UsageError):
    """A `.loe` file that is truncated, corrupted, or of a version this decoder cannot read."""


class CodecRuntimeError(LoeError, RuntimeError):
    """Work failed for a reason outside the user's arguments (e.g. an output that cannot be written)."""

    exit_code = 1
