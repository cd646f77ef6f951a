"""Keep the container tests out of ``make test``: they need Docker and a built image.

They run only when the marker is asked for, as ``scripts/container-test`` does
(``pytest -m container tests/container``). Otherwise they are deselected (counted in pytest's
summary as "deselected"), never skipped: when they run, they pass or fail for real.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "container" in (config.getoption("markexpr") or ""):
        return  # `-m container` (or any expression naming it) decides on its own
    dropped = [item for item in items if item.get_closest_marker("container")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("container")]
