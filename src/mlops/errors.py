"""The pipeline's one domain error type, caught at one boundary (the CLI), printed as one line."""

from __future__ import annotations

# Named exit codes: a workflow (or a person) can tell what kind of stop it was.
EXIT_OK = 0
EXIT_FAILED = 1  # a step's job/stack/test failed on AWS (or in the local runtime)
EXIT_GATE = 3  # the candidate model did not pass the evaluation gate
EXIT_CONFIG = 4  # configuration or input problem: fix the file/flag named
EXIT_USAGE = 64


class PipelineError(Exception):
    """What failed, the AWS reason, and where to look: one line a user can act on."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(PipelineError):
    exit_code = EXIT_CONFIG


class GateFailed(PipelineError):
    exit_code = EXIT_GATE
