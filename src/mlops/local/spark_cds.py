"""A Java Class Data Sharing (CDS) archive for the Spark driver JVM of the local Glue runs.

Every local Glue run starts a Spark JVM that loads ~11,000 classes from 250 jars; mapping them from
a dynamic CDS archive instead makes a run ~3 s faster (Spark starts and its first jobs run sooner).
The first run on a machine writes the archive (``-XX:ArchiveClassesAtExit``, slower once), later
runs map it (``-XX:SharedArchiveFile``). The Glue script itself is untouched: the options reach
the driver JVM through ``SPARK_SUBMIT_OPTS``, which Spark's launcher adds to the driver's command
line only. (``JDK_JAVA_OPTIONS`` would also reach the launcher JVM that spark-class starts first:
that one would dump its own small archive into the same file, load the driver's 118 MB archive in
vain, and print ``NOTE: Picked up ...`` on stderr.)

Safety: a truncated archive crashes the JVM (SIGBUS, even with ``-Xshare:auto``), so an archive is
only ever written under a unique temporary name and promoted with ``os.replace`` once a run that
wrote it succeeded and its header (written last by the JVM) is there. One run at a time writes
(a lock); concurrent runs go without. Any cache problem means no archive, never a failed job.
``MLOPS_SPARK_CDS=0`` turns it off; ``MLOPS_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock, the unique temporary names alone keep it safe
    fcntl = None  # type: ignore[assignment]

SWITCH = "MLOPS_SPARK_CDS"
OPTS_VAR = "SPARK_SUBMIT_OPTS"
# stale or mismatched archive: the JVM falls back without a warning line in the job's output
QUIET = "-Xlog:cds*=off"
_PICKED_UP = re.compile(r"^(NOTE: )?Picked up (JDK_JAVA_OPTIONS|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS): ")


@dataclass
class Archive:
    """What one run adds to its environment, and the archive it writes, if any."""

    env: dict[str, str] = field(default_factory=dict)
    pending: Path | None = None  # the temporary file this run's JVM dumps into
    final: Path | None = None
    lock: int | None = None

    def finish(self, ok: bool) -> None:
        """Promote the archive a successful run wrote; delete it otherwise. Never raises."""
        if self.pending is None:
            return
        try:
            if ok and complete(self.pending) and self.final is not None:
                self.pending.replace(self.final)  # a rename: atomic for readers
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.pending.unlink(missing_ok=True)
            self.pending = None
            _unlock(self.lock)
            self.lock = None


def prepare(env: Mapping[str, str] | None = None) -> Archive:
    """The archive options for a run whose environment is ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    if env.get(SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return Archive()
    try:
        name = archive_name(env)
        if name is None:
            return Archive()
        folder = cache_dir(env)
        final = folder / name
        if final.is_file():
            return Archive(env=_options(env, f"-XX:SharedArchiveFile={final}", "-Xshare:auto"))
        return _writer(env, folder, name)
    except OSError:  # unwritable or odd cache folder: run without
        return Archive()


def _writer(env: Mapping[str, str], folder: Path, name: str) -> Archive:
    """Options that make this run dump the archive, unless another run is dumping it now."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder / f"{name}.lock")
    if lock is None:
        return Archive()
    final = folder / name
    try:
        if final.is_file():  # promoted while we took the lock
            _unlock(lock)
            return Archive(env=_options(env, f"-XX:SharedArchiveFile={final}", "-Xshare:auto"))
        if lock >= 0:  # the only writer now: any temporary file was left by a killed run
            for stale in folder.glob(f"{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{name}.", suffix=".tmp")
        os.close(fd)
    except OSError:
        _unlock(lock)
        raise
    return Archive(
        env=_options(env, f"-XX:ArchiveClassesAtExit={tmp}"),
        pending=Path(tmp),
        final=final,
        lock=lock,
    )


def _options(env: Mapping[str, str], *options: str) -> dict[str, str]:
    """The user's own SPARK_SUBMIT_OPTS first, ours after (quoted as Spark's launcher parses)."""
    ours = " ".join(shlex.quote(option) for option in (*options, QUIET))
    return {OPTS_VAR: " ".join(filter(None, [env.get(OPTS_VAR, "").strip(), ours]))}


def complete(path: Path) -> bool:
    """The JVM seeks past the header, writes the regions, then the header: zeros = cut short."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head != b"\0\0\0\0"


def cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("MLOPS_CACHE_DIR"):
        return Path(env["MLOPS_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"], "mlops")
    return (Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".cache" / "mlops"


def archive_name(env: Mapping[str, str]) -> str | None:
    """Named by what makes an archive valid (JVM build, Spark's jars), read without a JVM."""
    java = _java(env)
    home = env.get("SPARK_HOME") or _pyspark_home()
    if java is None or home is None or not Path(home, "jars").is_dir():
        return None
    jars = Path(home, "jars")
    try:
        version = importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        version = "spark"
    jvm = [java, *sorted(java.parent.parent.glob("lib/server/libjvm.*"))]
    material = {
        "jvm": [[str(p), p.stat().st_mtime_ns, p.stat().st_size] for p in jvm],
        "jars": [str(jars), sorted(p.name for p in jars.iterdir())],
        "pyspark": version,
        "conf": env.get("SPARK_CONF_DIR", ""),  # on the driver's class path
    }
    digest = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
    return f"spark-{version}-{digest}.jsa"


def clean_output(output: str) -> str:
    """A job's output without the java launcher's ``Picked up ..._OPTIONS`` notes."""
    return "\n".join(line for line in output.splitlines() if not _PICKED_UP.match(line))


def _java(env: Mapping[str, str]) -> Path | None:
    """The java that spark-class runs: ``$JAVA_HOME/bin/java``, else the first on PATH."""
    home = env.get("JAVA_HOME")
    found = str(Path(home, "bin", "java")) if home else shutil.which("java", path=env.get("PATH"))
    return Path(found).resolve() if found and Path(found).is_file() else None


def _pyspark_home() -> str | None:
    spec = importlib.util.find_spec("pyspark")  # finds it without importing it
    locations = spec.submodule_search_locations if spec else None
    return locations[0] if locations else None


def _lock(path: Path) -> int | None:
    """The writer's lock: an fd (-1 without fcntl), None when another run holds it.

    flock, not a lock file's existence: a killed run's lock goes with its process.
    """
    if fcntl is None:
        return -1
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
