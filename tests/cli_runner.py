"""Run the command line as a user does: a fresh process, its exit code and its two streams."""

import subprocess
import sys


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clarity_fast", *map(str, args)], capture_output=True, text=True, cwd=cwd)
