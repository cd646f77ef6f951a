"""The Spark driver's class archive: written once, promoted atomically, never a job's failure."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops.local import spark_cds
from mlops.local.compute import Compute

HEADER = b"\xa8\xba\x0b\xf0"  # what a finished dump starts with (the JVM writes it last)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A JDK and a Spark home that look real to the cheap checks, and a private cache folder."""
    java = tmp_path / "jdk/bin/java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    (tmp_path / "jdk/lib/server").mkdir(parents=True)
    (tmp_path / "jdk/lib/server/libjvm.so").write_text("jvm")
    (tmp_path / "spark/jars").mkdir(parents=True)
    (tmp_path / "spark/jars/spark-core.jar").write_text("jar")
    return {
        "JAVA_HOME": str(tmp_path / "jdk"),
        "SPARK_HOME": str(tmp_path / "spark"),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),  # never the real cache, even if the code is wrong
        "HOME": str(tmp_path / "home"),
        "PATH": os.environ.get("PATH", ""),
    }


def options(archive: spark_cds.Archive) -> list[str]:
    return shlex.split(archive.env.get("SPARK_SUBMIT_OPTS", ""))


def dump(archive: spark_cds.Archive, body: bytes = b"classes") -> None:
    """What the JVM does at exit with -XX:ArchiveClassesAtExit: replace the file with its dump."""
    assert archive.pending is not None
    archive.pending.unlink()
    archive.pending.write_bytes(HEADER + body)


def test_missing_archive_makes_the_run_write_it_under_a_temporary_name(env):
    archive = spark_cds.prepare(env)
    cache = Path(env["MLOPS_CACHE_DIR"])
    assert archive.pending is not None and archive.pending.parent == cache
    assert archive.pending.name.endswith(".tmp") and archive.pending.is_file()
    assert options(archive) == [f"-XX:ArchiveClassesAtExit={archive.pending}", "-Xlog:cds*=off"]
    assert archive.final == cache / spark_cds.archive_name(env)
    assert not archive.final.exists()
    assert set(archive.env) == {"SPARK_SUBMIT_OPTS"}  # the driver only, not JDK_JAVA_OPTIONS
    archive.finish(False)


def test_present_archive_is_mapped_and_may_be_ignored(env):
    cache = Path(env["MLOPS_CACHE_DIR"])
    cache.mkdir()
    final = cache / spark_cds.archive_name(env)
    final.write_bytes(HEADER)
    archive = spark_cds.prepare(env)
    assert archive.pending is None
    assert options(archive) == [f"-XX:SharedArchiveFile={final}", "-Xshare:auto", "-Xlog:cds*=off"]
    archive.finish(True)  # nothing to promote: the archive stays
    assert final.read_bytes() == HEADER


def test_present_archive_needs_no_write_access(env, monkeypatch):
    test_present_archive_is_mapped_and_may_be_ignored(env)

    def read_only(path):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(spark_cds, "_lock", read_only)
    assert options(spark_cds.prepare(env))[0].startswith("-XX:SharedArchiveFile=")


def test_success_promotes_the_dump_by_rename(env):
    archive = spark_cds.prepare(env)
    pending, final = archive.pending, archive.final
    dump(archive)
    inode = pending.stat().st_ino
    archive.finish(True)
    assert final.read_bytes() == HEADER + b"classes"
    assert final.stat().st_ino == inode  # renamed (atomic), not copied
    assert not pending.exists()
    assert spark_cds.prepare(env).pending is None  # the next run maps it


@pytest.mark.parametrize(
    ("ok", "body"),
    [(False, HEADER + b"classes"), (True, b"\0\0\0\0regions"), (True, b"")],
    ids=["run-failed", "dump-cut-short", "never-dumped"],
)
def test_failed_or_unfinished_dump_is_deleted(env, ok, body):
    archive = spark_cds.prepare(env)
    archive.pending.write_bytes(body)
    archive.finish(ok)
    cache = Path(env["MLOPS_CACHE_DIR"])
    assert sorted(p.name for p in cache.iterdir()) == [f"{archive.final.name}.lock"]
    assert spark_cds.prepare(env).pending is not None  # lock released: the next run writes it


def test_one_writer_at_a_time_the_others_run_without(env):
    barrier = threading.Barrier(6, timeout=20)
    archives: list[spark_cds.Archive] = []

    def worker() -> None:
        barrier.wait()
        archives.append(spark_cds.prepare(env))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writers = [a for a in archives if a.pending is not None]
    assert len(writers) == 1
    assert all(a.env == {} for a in archives if a.pending is None)
    dump(writers[0])
    writers[0].finish(True)
    assert writers[0].final.read_bytes() == HEADER + b"classes"


def test_concurrent_promotions_leave_one_whole_archive(env, monkeypatch):
    monkeypatch.setattr(spark_cds, "fcntl", None)  # no lock: every run dumps and promotes
    archives = [spark_cds.prepare(env) for _ in range(6)]
    assert len({a.pending for a in archives}) == 6  # each its own temporary file
    bodies = [bytes([i + 1]) * 100_000 for i in range(6)]
    barrier = threading.Barrier(6, timeout=20)

    def worker(archive: spark_cds.Archive, body: bytes) -> None:
        dump(archive, body)
        barrier.wait()
        archive.finish(True)

    pairs = zip(archives, bodies, strict=True)
    threads = [threading.Thread(target=worker, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache = Path(env["MLOPS_CACHE_DIR"])
    assert [p.name for p in cache.iterdir()] == [archives[0].final.name]
    assert archives[0].final.read_bytes() in {HEADER + b for b in bodies}


def test_leftovers_of_killed_runs_are_removed_by_the_next_writer(env):
    cache = Path(env["MLOPS_CACHE_DIR"])
    cache.mkdir()
    leftover = cache / f"{spark_cds.archive_name(env)}.dead.tmp"
    leftover.write_bytes(b"\0" * 10)
    archive = spark_cds.prepare(env)
    assert not leftover.exists()
    archive.finish(False)


def test_unwritable_cache_folder_means_no_options(env, tmp_path):
    (tmp_path / "file").write_text("not a folder")  # fails even as root, unlike chmod
    env["MLOPS_CACHE_DIR"] = str(tmp_path / "file/cache")
    archive = spark_cds.prepare(env)
    assert archive.env == {} and archive.pending is None
    archive.finish(True)


def test_the_users_own_options_are_kept_first(env):
    env["SPARK_SUBMIT_OPTS"] = "-Dmine=1 -Xmx2g"
    archive = spark_cds.prepare(env)
    assert options(archive)[:2] == ["-Dmine=1", "-Xmx2g"]
    assert options(archive)[2].startswith("-XX:ArchiveClassesAtExit=")
    archive.finish(False)


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_switched_off_adds_nothing_and_writes_nothing(env, value):
    env["MLOPS_SPARK_CDS"] = value
    assert spark_cds.prepare(env).env == {}
    assert not Path(env["MLOPS_CACHE_DIR"]).exists()


def test_no_java_or_no_spark_means_no_options(env, tmp_path):
    assert spark_cds.prepare({**env, "JAVA_HOME": str(tmp_path / "nojdk")}).env == {}
    assert spark_cds.prepare({**env, "SPARK_HOME": str(tmp_path / "nospark")}).env == {}


def test_name_follows_the_jvm_build_and_the_jars(env, tmp_path):
    name = spark_cds.archive_name(env)
    assert spark_cds.archive_name(dict(env)) == name
    java = tmp_path / "jdk/bin/java"
    os.utime(java, ns=(0, java.stat().st_mtime_ns + 10**9))
    assert spark_cds.archive_name(env) != name
    name = spark_cds.archive_name(env)
    (tmp_path / "spark/jars/extra.jar").write_text("jar")
    assert spark_cds.archive_name(env) != name


@pytest.mark.parametrize(
    ("base", "cache"),
    [
        ({"MLOPS_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"),
        ({"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/mlops"),
        ({"HOME": "/h"}, "/h/.cache/mlops"),
    ],
)
def test_cache_folder(base, cache):
    assert spark_cds.cache_dir(base) == Path(cache)


def test_java_launcher_notes_are_never_the_failure_reason():
    output = "etl: starting\nerror: --input is missing\nNOTE: Picked up JDK_JAVA_OPTIONS: -Xmx1g\n"
    assert Compute.reason(spark_cds.clean_output(output), 2) == "error: --input is missing"
    assert "Picked up" not in spark_cds.clean_output("Picked up JAVA_TOOL_OPTIONS: -Da=1\nok")


def test_glue_runs_pass_the_options_and_promote_only_after_success(env, tmp_path):
    rt = SimpleNamespace(child_env=env, work_dir=tmp_path, faults=SimpleNamespace(take=bool))
    compute = Compute(rt)

    def download(uri: str, dest: Path) -> Path:
        dest.mkdir(parents=True)
        (dest / "etl.py").write_text("")
        return dest

    compute.download = download
    job = SimpleNamespace(default_arguments={}, name="etl", command={"ScriptLocation": "s3://b/k"})
    results = [(2, "error: bad rows\nNOTE: Picked up JDK_JAVA_OPTIONS: -Xmx1g\n"), (0, "etl: ok")]

    def run(argv, extra, cwd):
        path = Path(shlex.split(extra["SPARK_SUBMIT_OPTS"])[0].split("=", 1)[1])
        path.unlink()
        path.write_bytes(HEADER)  # the JVM's dump
        return results.pop(0)

    compute.run = run
    final = Path(env["MLOPS_CACHE_DIR"], spark_cds.archive_name(env))
    failed = SimpleNamespace(job_run_id="jr_000000000001", arguments={}, status=None)
    compute._glue(job, failed)
    assert (failed.status, failed.error_message) == ("FAILED", "error: bad rows")
    assert not final.exists()
    succeeded = SimpleNamespace(job_run_id="jr_000000000002", arguments={}, status=None)
    compute._glue(job, succeeded)
    assert succeeded.status == "SUCCEEDED"
    assert final.read_bytes() == HEADER


def test_a_cache_error_while_preparing_leaves_the_lock_free(env, monkeypatch):
    def no_space(**kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spark_cds.tempfile, "mkstemp", no_space)
    assert spark_cds.prepare(env).env == {}
    monkeypatch.undo()
    archive = spark_cds.prepare(env)
    assert archive.pending is not None
    archive.finish(False)


def test_an_archive_promoted_while_waiting_for_the_lock_is_mapped(env, monkeypatch):
    lock = spark_cds._lock

    def lock_after_another_run_promoted(path):
        Path(str(path).removesuffix(".lock")).write_bytes(HEADER)
        return lock(path)

    monkeypatch.setattr(spark_cds, "_lock", lock_after_another_run_promoted)
    archive = spark_cds.prepare(env)
    assert archive.pending is None
    assert options(archive)[0].startswith("-XX:SharedArchiveFile=")
    monkeypatch.undo()
    Path(env["MLOPS_CACHE_DIR"], spark_cds.archive_name(env)).unlink()
    archive = spark_cds.prepare(env)
    assert archive.pending is not None  # the lock was released
    archive.finish(False)


@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
def test_a_real_jvm_accepts_the_options_and_its_dump_is_complete(tmp_path):
    """Dump and map with the real JVM (``java -version``: a tiny archive, well under a second)."""
    java = Path(shutil.which("java")).resolve()
    env = {
        "JAVA_HOME": str(java.parent.parent),
        "SPARK_HOME": str(tmp_path),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path / "home"),
    }
    (tmp_path / "jars").mkdir()
    for step in ("dump", "map"):
        archive = spark_cds.prepare(env)
        assert (archive.pending is None) == (step == "map")
        strict = ["-Xshare:on"] if step == "map" else []  # fails unless the archive is mapped
        proc = subprocess.run(
            [str(java), *options(archive), *strict, "-version"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "cds" not in proc.stdout + proc.stderr
        if step == "dump":
            assert spark_cds.complete(archive.pending)
        archive.finish(True)
    assert Path(env["MLOPS_CACHE_DIR"], spark_cds.archive_name(env)).stat().st_size > 10_000
