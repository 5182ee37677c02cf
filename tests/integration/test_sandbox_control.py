"""The sandbox's control API: faults, settings, persistence across restarts."""

from __future__ import annotations

import httpx
import pytest

from tests.support.sandbox_proc import SandboxProcess


def test_fault_spec_errors_name_the_field(sandbox: SandboxProcess) -> None:
    r = httpx.post(sandbox.url + "/_sandbox/faults", json={"kind": "error"})
    assert r.status_code == 400
    assert "'provider' is required" in r.json()["error"]
    r = httpx.post(sandbox.url + "/_sandbox/faults", json={"provider": "kling", "kind": "boom"})
    assert r.status_code == 400
    assert "'kind' must be one of" in r.json()["error"]


def test_faults_are_listed_and_cleared(sandbox: SandboxProcess) -> None:
    sandbox.fault(provider="gemini", status=503, count=2)
    listed = sandbox.get("/_sandbox/faults")["faults"]
    assert [(f["provider"], f["status"], f["remaining"]) for f in listed] == [("gemini", 503, 2)]
    sandbox.clear_faults()
    assert sandbox.get("/_sandbox/faults")["faults"] == []


def test_settings_change_at_runtime_and_survive_restart(fresh_sandbox: SandboxProcess) -> None:
    assert fresh_sandbox.configure(kling_seconds=12.5)["kling_seconds"] == 12.5
    fresh_sandbox.restart()
    assert fresh_sandbox.get("/_sandbox/config")["kling_seconds"] == 12.5


def test_unknown_setting_is_refused_with_the_known_ones(sandbox: SandboxProcess) -> None:
    r = httpx.post(sandbox.url + "/_sandbox/config", json={"kling_secs": 1})
    assert r.status_code == 400
    assert "kling_seconds" in r.json()["error"]


@pytest.mark.parametrize("path", ["/nothing", "/_sandbox/nothing"])
def test_unknown_paths_are_404(sandbox: SandboxProcess, path: str) -> None:
    assert httpx.get(sandbox.url + path).status_code == 404
