"""`edgekd ARGS` run in the test process: the same CLI code (`user_errors`, exit status, the
one `error:` line) without a fresh interpreter's 4 s of imports. Each error module keeps one
real `python -m edgekd` run as well."""

from __future__ import annotations

import subprocess

from typer.testing import CliRunner

from edgekd.cli import app


def cli(*args: str) -> subprocess.CompletedProcess:
    # an exception the CLI does not turn into its one line propagates: a traceback in a real run
    result = CliRunner().invoke(app, [*args, "--quiet"] if args[0] == "build" else list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
