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
PACKAGE = Path(__file__).resolve().parents[1]
COMPILERS = (PACKAGE / "inference_definition.py", PACKAGE / "monitor_definition.py")


def python_of(root: Path) -> Path:
    python = Path(os.environ.get(PYTHON_ENV) or root / VENV_PYTHON)
    if not python.exists():
        raise ConfigError(
            f"the inference venv's python {python} is missing: run make inference-venv "
            f"(or set {PYTHON_ENV})"
        )
    return python


def cache_key(cfg: dict[str, Any], python: Path, lock: Path) -> str:
    """What decides the definition: the config (placeholder role), compilers, SDK lock, python."""
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    for compiler in COMPILERS:
        digest.update(compiler.read_bytes())
    digest.update(lock.read_bytes() if lock.is_file() else b"no lock")
    digest.update(str(python).encode())
    return digest.hexdigest()[:32]


def _run(python: Path, cfgs: list[dict[str, Any]]) -> list[str]:
    """Every definition of ``cfgs`` from one subprocess: the SDK's import is the cost."""
    with tempfile.TemporaryDirectory(prefix="mlops-inference-") as tmp:
        config_file, out = Path(tmp) / "config.json", Path(tmp) / "definition.json"
        config_file.write_text(json.dumps(cfgs), encoding="utf-8")
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
        return [str(d).strip() for d in json.loads(out.read_text(encoding="utf-8"))]


def compile_definitions(root: Path, cfgs: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(the definition JSON of each config, how many came from the cache)."""
    python = python_of(root)
    lock = root / "requirements" / "inference.txt"
    generic = [{**cfg, "role_arn": ROLE_PLACEHOLDER} for cfg in cfgs]
    cache = python.parent.parent / "definitions"
    paths = [cache / f"{cache_key(g, python, lock)}.json" for g in generic]
    texts = {p: p.read_text(encoding="utf-8") for p in paths if p.is_file()}
    missing = [(p, g) for p, g in zip(paths, generic, strict=True) if p not in texts]
    if missing:
        for (path, _), text in zip(missing, _run(python, [g for _, g in missing]), strict=True):
            texts[path] = text
            with contextlib.suppress(OSError):  # no cache (read-only venv): compile every time
                cache.mkdir(exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)
    found = [
        texts[p].replace(ROLE_PLACEHOLDER, c["role_arn"]) for p, c in zip(paths, cfgs, strict=True)
    ]
    return found, len(paths) - len(missing)


def compile_definition(root: Path, cfg: dict[str, Any]) -> tuple[str, bool]:
    """(the definition JSON for ``cfg``, whether it came from the cache)."""
    (text,), cached = compile_definitions(root, [cfg])
    return text, bool(cached)
