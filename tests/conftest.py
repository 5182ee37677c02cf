from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox_proc import SandboxProcess


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox process for the session; tests that inject faults clear them after themselves."""
    proc = SandboxProcess(tmp_path_factory.mktemp("sandbox"), "--notion-rate", "1000").start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """A sandbox of its own, for tests that change its settings or restart it."""
    proc = SandboxProcess(tmp_path / "sandbox").start()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").clear_faults()
