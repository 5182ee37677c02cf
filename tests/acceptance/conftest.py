from __future__ import annotations

import pytest

from tests.support.demo_run import DemoRun, first_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo, run once per worker; its tests are marked SHARED_DEMO so they share one worker."""
    return first_demo(tmp_path_factory.mktemp("demo"))
