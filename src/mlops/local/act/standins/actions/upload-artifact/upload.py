"""The offline upload-artifact stand-in's one step (stdlib only: it runs on the runner's Python).

Matching follows upload-artifact's documented rules (its README, "Inputs" and "Upload using
Multiple Paths and Exclusions"): one path, folder or glob a line, a leading ``!`` excludes, hidden
files are left out unless ``include-hidden-files`` is true, and the files keep their paths below
the least common ancestor of the search paths (excludes do not change it).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
from pathlib import Path


def _expand(pattern: str) -> set[Path]:
    found = set()
    # glob.glob, not Path.glob: a pattern may be absolute or climb with ..
    for match in glob.glob(pattern, recursive=True, include_hidden=True):  # noqa: PTH207
        path = Path(match)
        found |= {p for p in path.rglob("*") if p.is_file()} if path.is_dir() else {path}
    return {p for p in found if p.is_file()}


def search_root(pattern: str) -> Path:
    """Where a path input's search starts: the part before its first wildcard (a file's folder)."""
    parts = Path(pattern).parts
    cut = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    root = Path(*parts[:cut]) if cut else Path()
    return (root.parent if root.is_file() else root).absolute()


def matched(lines: str, hidden: bool) -> list[Path]:
    """The files the ``path`` input names, excludes and hidden files taken out."""
    keep: set[Path] = set()
    drop: set[Path] = set()
    for raw in lines.splitlines():
        line = raw.strip()
        if line.startswith("!"):
            drop |= _expand(line[1:].strip())
        elif line:
            keep |= _expand(line)
    files = sorted(p.absolute() for p in keep - drop)
    if not hidden:  # a dot-name below the workspace; the workspace's own path may have some
        here = Path.cwd()
        files = [p for p in files if not _hidden(p, here)]
    return files


def _hidden(path: Path, workspace: Path) -> bool:
    inside = path.relative_to(workspace) if path.is_relative_to(workspace) else path
    return any(part.startswith(".") for part in inside.parts if part not in ("..", "/"))


def main() -> int:
    env = os.environ
    os.chdir(env.get("GITHUB_WORKSPACE") or ".")  # paths are the workspace's, as on GitHub
    name, target_root = env.get("INPUT_NAME", "artifact"), Path(env["MLOPS_ACT_ARTIFACTS"])
    files = matched(env.get("INPUT_PATH", ""), env.get("INPUT_INCLUDE_HIDDEN_FILES") == "true")
    if not files:
        message = f"No files were found with the provided path: {env.get('INPUT_PATH', '')}."
        mode = env.get("INPUT_IF_NO_FILES_FOUND", "warn")
        if mode == "error":
            print(f"::error::{message} No artifacts will be uploaded.")
            return 1
        if mode == "warn":
            print(f"::warning::{message} No artifacts will be uploaded.")
        return 0
    target = target_root / name
    if target.exists() and env.get("INPUT_OVERWRITE") != "true":
        print(f"::error::an artifact named {name} already exists in this run")
        return 1
    shutil.rmtree(target, ignore_errors=True)
    includes = [x.strip() for x in env.get("INPUT_PATH", "").splitlines()]
    roots = [search_root(x) for x in includes if x and not x.startswith("!")]
    base = Path(os.path.commonpath(roots))
    digest = hashlib.sha256()
    for path in files:
        dest = target / path.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        digest.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes())
    with Path(env["GITHUB_OUTPUT"]).open("a", encoding="utf-8") as out:
        out.write(f"artifact-id={int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)}\n")
        out.write(f"artifact-url={target.as_uri()}\n")
        out.write(f"artifact-digest={digest.hexdigest()}\n")
    print(f"{len(files)} file(s) of artifact {name} are in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
