"""Fault injection for tests and demos: ``MLOPS_LOCAL_FAULTS=training,...`` or ``runtime.faults``.

Each named fault makes the next matching piece of local compute fail the way AWS reports that
failure, once.
"""

from __future__ import annotations

from typing import Any

from mlops.errors import ConfigError

FAULTS = (
    "glue",
    "training",
    "evaluation",
    "gate",
    "stack-create",
    "stack-update",
    "system-test",
    "prod-deploy",
    "sagemaker-rollback",
)


class Faults:
    """Fault injection for tests and demos: MLOPS_LOCAL_FAULTS=training,... or runtime.faults."""

    def __init__(self, names: set[str]) -> None:
        unknown = names - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown fault {sorted(unknown)[0]!r}: use {', '.join(FAULTS)}")
        self.names = names

    def take(self, name: str) -> bool:
        """True once for an injected fault (the next matching job fails)."""
        if name in self.names:
            self.names.discard(name)
            return True
        return False

    def active(self, name: str) -> bool:
        return name in self.names

    def stack_failure(self, _resource: Any) -> str:
        for name in ("stack-create", "stack-update"):
            if self.take(name):
                return (
                    f"injected {name} fault: Could not find model data: the endpoint failed "
                    "to start (see the endpoint's CloudWatch logs)"
                )
        return ""

    def endpoint_failure(self, endpoint: str) -> str:
        if "-prod" in endpoint and self.take("prod-deploy"):
            return (
                "injected prod-deploy fault: The primary container for production variant "
                "AllTraffic did not pass the ping health check"
            )
        return ""
