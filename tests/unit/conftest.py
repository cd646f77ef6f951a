"""One local SparkSession for the whole test session: a JVM start costs seconds, reuse it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def moto_env(monkeypatch):
    """For moto's in-process mock: no local server's endpoint catches the calls, fake keys."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)  # another test's local server must not catch these calls
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")


@pytest.fixture(scope="session")
def spark():
    """local[2], 4 shuffle partitions, no UI: small and quiet, like the ETL's own local session."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("unit-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")  # quick JIT tier only
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
