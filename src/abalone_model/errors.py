"""The model package's one domain error, caught at the entrypoint boundary (``__main__``)."""

from __future__ import annotations


class ModelError(Exception):
    """A failure with a message a user can act on: what failed and what to do."""

    exit_code = 2


class InputDataError(ModelError):
    """Training, validation or test data that does not match the schema."""

    exit_code = 3
