"""GitHub Actions integration in one place: step outputs and the job summary (when set)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def set_output(name: str, value: str) -> None:
    """Write a step output for later jobs; a no-op outside GitHub Actions."""
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        return
    delimiter = f"EOF_{uuid.uuid4().hex}"
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def summary(markdown: str) -> None:
    """Append markdown to the job summary; a no-op outside GitHub Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip() + "\n\n")


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
