"""Command-line usage errors shared by the processing entrypoints (monitor, explain).

argparse prints the usage and exits 2 on a bad argument; a job's logs and FailureReason want one
line and EX_USAGE instead, like every other error ``__main__`` reports.
"""

from __future__ import annotations

import argparse

from abalone_model.errors import ModelError


class UsageError(ModelError):
    """Bad command-line arguments: one line, like every other error (EX_USAGE)."""

    exit_code = 64


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + exit 2
        raise UsageError(f"{self.prog}: {message}")
