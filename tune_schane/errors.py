"""The one exception type that means "the user gave us something wrong".

The CLI turns :class:`BadInput` into one line on stderr and exit code 2; anything else is a bug or
an environment failure and exits 1. Library code raises ``BadInput`` (a ``ValueError``) so that
callers outside the CLI can still catch it as a plain ``ValueError``.
"""

from __future__ import annotations


class BadInput(ValueError):
    """Invalid user input: a config value, a file, a path, a space definition."""
