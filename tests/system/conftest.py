"""Options for the system tests: they run against any endpoint, local or real, by name and region.

Run by ``mlops system-test --stage dev|prod`` (which fills every option from the model package's
lineage), or by hand: ``pytest tests/system --endpoint-name NAME --region REGION --test-data DIR``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import boto3
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("system", "endpoint system tests")
    group.addoption("--endpoint-name", required=True, help="SageMaker endpoint to test")
    group.addoption("--region", default=None, help="AWS region of the endpoint")
    group.addoption(
        "--test-data",
        required=True,
        help="directory of CSV files: header row, target first, then raw features",
    )
    group.addoption(
        "--expected-rmse",
        type=float,
        default=None,
        help="RMSE of the offline evaluation on the same rows",
    )
    group.addoption(
        "--rmse-tolerance",
        type=float,
        default=0.01,
        help="allowed relative difference from --expected-rmse",
    )
    group.addoption(
        "--latency-budget-ms",
        type=float,
        default=500.0,
        help="p95 budget for one-row requests, client side",
    )
    group.addoption(
        "--capture-wait-seconds",
        type=float,
        default=600.0,
        help="how long captured records may take to reach S3 (delivery is asynchronous)",
    )
    group.addoption(
        "--capture-uri",
        default=None,
        help="s3:// prefix where the endpoint's data capture must appear",
    )


@pytest.fixture(scope="session")
def runtime(pytestconfig: pytest.Config):
    return boto3.Session(region_name=pytestconfig.getoption("region")).client("sagemaker-runtime")


@pytest.fixture(scope="session")
def endpoint(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("endpoint_name")


@pytest.fixture(scope="session")
def held_out(pytestconfig: pytest.Config) -> tuple[list[str], list[list[str]], list[float]]:
    """Feature header, feature rows and targets of the held-out test set."""
    header: list[str] = []
    rows: list[list[str]] = []
    targets: list[float] = []
    files = sorted(Path(pytestconfig.getoption("test_data")).glob("*.csv"))
    assert files, "no CSV files in --test-data"
    for path in files:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            head = next(reader, None)
            if head is None:
                continue
            header = head[1:]
            for row in reader:
                targets.append(float(row[0]))
                rows.append(row[1:])
    assert rows, "the test data holds no rows"
    return header, rows, targets
