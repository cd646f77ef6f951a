"""The fixtures the step-level integration modules have in common: a local AWS per module, and
the pipeline's state built once per module, on first use, in order (bootstrap, ETL, training, a
registered package, dev, prod). Module scoped on purpose: a local runtime sets the process's AWS
endpoint variables and patches moto, so it must end with its module (a longer-lived one leaks
into every later module of the worker).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import config as config_mod
from mlops.context import Context
from mlops.local.runtime import LocalRuntime
from mlops.manifest import Manifest
from mlops.steps import deploy, etl, evaluate, gate, promote, register, system_test, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with LocalRuntime(ROOT, runs) as runtime:
        cfg = config_mod.load(ROOT / "pipeline.toml")
        ctx = Context(cfg, runtime.session, Manifest(runtime.run_dir / "manifest.json"), root=ROOT)
        runtime.bootstrap(ctx)
        yield runtime, ctx


@pytest.fixture(scope="module")
def etl_done(local) -> dict:
    return etl.run(local[1])


@pytest.fixture(scope="module")
def trained(local, etl_done) -> dict:
    runtime, ctx = local
    return train.run(ctx, runtime.image_uri)


@pytest.fixture(scope="module")
def registered(local, trained) -> str:
    """The first package: evaluated, through the gate, registered Approved."""
    _, ctx = local
    evaluate.run(ctx)
    gate.run(ctx)
    return register.run(ctx)


@pytest.fixture(scope="module")
def in_dev(local, registered) -> str:
    _, ctx = local
    deploy.run(ctx, "dev", registered)
    system_test.run(ctx, "dev", registered)
    return registered


@pytest.fixture(scope="module")
def in_prod(local, in_dev) -> str:
    _, ctx = local
    deploy.run(ctx, "prod", in_dev)
    system_test.run(ctx, "prod", in_dev)
    promote.run(ctx, in_dev)
    return in_dev
