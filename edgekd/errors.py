"""User-facing errors: one line that names the problem and the fix."""


class EdgekdError(Exception):
    """An error caused by the user's input. The CLI prints it on one line and exits 2."""
