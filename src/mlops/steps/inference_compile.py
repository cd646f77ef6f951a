"""The batch inference pipeline's definition, compiled by the SageMaker SDK's own virtualenv.

The SDK is not in .venv: ``python -m mlops.inference_definition`` runs in .venv-inference as a
subprocess (importing the SDK takes ~4 s). A compiled definition depends only on its config, the
compiler's source and the SDK lock, so it is kept beside that python (``definitions/<key>.json``)
and reused: the account-specific job role is compiled as a placeholder and put in afterwards,
so every run against any account reuses it. A fresh runner has no cache and just compiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError, PipelineError

PYTHON_ENV = "MLOPS_INFERENCE_PYTHON"
VENV_PYTHON = ".venv-inference/bin/python"
COMPILE_TIMEOUT_S = 600
ROLE_PLACEHOLDER = "arn:aws:iam::000000000000:role/mlops-definition-placeholder"
COMPILER = Path(__file__).resolve().parents[1] / "inference_definition.py"


def python_of(root: Path) -> Path:
    python = Path(os.environ.get(PYTHON_ENV) or root / VENV_PYTHON)
    if not python.exists():
        raise ConfigError(
            f"the inference venv's python {python} is missing: run make inference-venv "
            f"(or set {PYTHON_ENV})"
        )
    return python


def cache_key(cfg: dict[str, Any], python: Path, lock: Path) -> str:
    """What decides the definition: the config (placeholder role), compiler, SDK lock, python."""
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    digest.update(COMPILER.read_bytes())
    digest.update(lock.read_bytes() if lock.is_file() else b"no lock")
    digest.update(str(python).encode())
    return digest.hexdigest()[:32]


def _run(python: Path, cfg: dict[str, Any]) -> str:
    with tempfile.TemporaryDirectory(prefix="mlops-inference-") as tmp:
        config_file, out = Path(tmp) / "config.json", Path(tmp) / "definition.json"
        config_file.write_text(json.dumps(cfg), encoding="utf-8")
        command = [str(python), "-m", "mlops.inference_definition"]
        command += ["--config", str(config_file), "--out", str(out)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PipelineError(f"compile the inference pipeline definition: {exc}") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
            raise PipelineError(f"compile the inference pipeline definition: {lines[-1]}")
        return out.read_text(encoding="utf-8").strip()


def compile_definition(root: Path, cfg: dict[str, Any]) -> tuple[str, bool]:
    """(the definition JSON for ``cfg``, whether it came from the cache)."""
    python = python_of(root)
    generic = {**cfg, "role_arn": ROLE_PLACEHOLDER}
    cache = python.parent.parent / "definitions"
    path = cache / f"{cache_key(generic, python, root / 'requirements' / 'inference.txt')}.json"
    cached = path.is_file()
    if cached:
        text = path.read_text(encoding="utf-8")
    else:
        text = _run(python, generic)
        with contextlib.suppress(OSError):  # no cache (read-only venv): compile every time
            cache.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    return text.replace(ROLE_PLACEHOLDER, cfg["role_arn"]), cached
