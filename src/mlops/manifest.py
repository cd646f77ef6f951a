"""One run, as data: a JSON manifest that grows step by step.

Each step reads what it needs from it and adds what it made; nothing is looked up "by latest".
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError


class Manifest:
    """A dict persisted atomically after every change, so a failed step leaves a readable file."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = data or {}

    @classmethod
    def load(cls, path: str | Path, *, create: bool = False) -> Manifest:
        path = Path(path)
        if not path.exists():
            if create:
                return cls(path)
            raise ConfigError(f"run manifest {path} not found (run the previous step first)")
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            raise ConfigError(f"run manifest {path} is not valid JSON") from None

    def require(self, key: str, step: str) -> Any:
        """A value an earlier step wrote; a clear error naming that step when it is missing."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(
                    f"run manifest {self.path} has no {key}: run `mlops {step}` first"
                )
            node = node[part]
        return node

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self.require(key, "")
        except ConfigError:
            return default

    def update(self, section: str, values: dict[str, Any]) -> None:
        self.data.setdefault(section, {}).update(values)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, indent=2, default=str)  # in the order steps ran
            fh.write("\n")
        Path(tmp).replace(self.path)
