"""User-facing errors: one line that names the problem and the fix."""


class EdgekdError(Exception):
    """An error caused by the user's input. The CLI prints it on one line and exits 2."""

    exit_code = 2


class VerificationFailed(EdgekdError):
    """An artifact disagrees with its PyTorch model beyond the allowed fraction. Raised after
    the report is written; the CLI exits 3, so scripts can tell it from bad input."""

    exit_code = 3
