"""The CLI in the test's own process.

``cascor_here`` runs a command through the same click group as ``python -m cascor`` (the
group's ``invoke`` turns a CascorError into one ``error:`` line and exit 1), on real files, but
without the ~5 s of interpreter and torch start-up a subprocess costs. Tests of what only a
process shows (signals, kills, start-up, a missing optional package, pipes and terminals) keep
real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess


def cascor_here(*args, cwd=None, check: bool = False) -> subprocess.CompletedProcess:
    """``cascor ARGS`` in this process: a CompletedProcess with the exit code, stdout and stderr.

    An exception the CLI let through would have been a traceback in a real process: it is put
    on stderr as one (``Traceback (in process): ...``), so "no traceback" checks still catch it."""
    from click.testing import CliRunner

    from cascor.cli import main

    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1 (the declared lower bound) mixes them by default
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps stderr apart always (and has no mix_stderr)
    try:
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"Traceback (in process): {result.exception!r}\n"
    proc = subprocess.CompletedProcess(["cascor", *map(str, args)], result.exit_code, result.stdout, stderr)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    """The JSON document a ``--json`` command printed last on stdout."""
    return json.loads(proc.stdout.strip().splitlines()[-1])
