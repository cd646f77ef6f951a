"""One local SparkSession for the whole test session: a JVM start costs seconds, reuse it."""

from __future__ import annotations

import pytest


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
