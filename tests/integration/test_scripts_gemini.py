"""generate_asset.py and generate_storyboard.py against the sandbox's Gemini, as real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.integration.test_scripts_support import run_script, script_env, secrets_of
from tests.support.sandbox_proc import SandboxProcess


@pytest.fixture(scope="module")
def fast(sandbox: SandboxProcess) -> Iterator[None]:
    """The sandbox's Gemini answers at once (its settings are restored: the session sandbox is shared)."""
    before = sandbox.get("/_sandbox/config")
    sandbox.configure(gemini_image_seconds=0.0, gemini_text_seconds=0.0)
    yield
    sandbox.configure(
        gemini_image_seconds=before["gemini_image_seconds"], gemini_text_seconds=before["gemini_text_seconds"]
    )


def test_two_prompts_give_two_different_pngs(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    env = script_env(sandbox, PIPELINE_TRACE="test/asset_env_s01")
    a = run_script(
        "generate_asset", "--prompt", "Reed-lined shallows at dawn", "--output", tmp_path / "a.png", env=env
    )
    b = run_script(
        "generate_asset", "--prompt", "Snowy pine forest at night", "--output", tmp_path / "b.png", env=env
    )
    for run in (a, b):
        result = run.result
        assert result["provider"] == "gemini"
        assert result["cost_usd"] == pytest.approx(0.039, abs=0.002)
        assert (result["meta"]["width"], result["meta"]["height"]) == (1344, 768)
    with Image.open(tmp_path / "a.png") as first, Image.open(tmp_path / "b.png") as second:
        assert first.format == "PNG"
        assert first.size == (1344, 768)
        difference = ImageStat.Stat(ImageChops.difference(first.convert("RGB"), second.convert("RGB"))).mean
        assert max(difference) > 5
    traced = [c for c in sandbox.calls("gemini") if c.get("item") == "asset_env_s01"]
    assert len(traced) >= 2


def test_aspect_ratio_is_passed_on(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    output = tmp_path / "c.png"
    run = run_script(
        "generate_asset",
        "--prompt",
        "A heron",
        "--aspect-ratio",
        "1:1",
        "--output",
        output,
        env=script_env(sandbox),
    )
    with Image.open(tmp_path / "c.png") as image:
        assert image.width == image.height
    assert run.result["meta"]["aspect_ratio"] == "1:1"


@pytest.mark.parametrize(
    ("trigger", "exit_code", "kind", "code"),
    [
        ("[sandbox:block-prompt]", 1, "permanent", "SAFETY"),
        ("[sandbox:block-output]", 1, "permanent", "IMAGE_SAFETY"),
        ("[sandbox:text-only]", 75, "transient", "no_image"),
        ("[sandbox:quota-day]", 1, "permanent", "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    ],
)
def test_model_refusals(
    sandbox: SandboxProcess, fast: None, tmp_path: Path, trigger: str, exit_code: int, kind: str, code: str
) -> None:
    output = tmp_path / "x.png"
    run = run_script(
        "generate_asset", "--prompt", f"A heron {trigger}", "--output", output, env=script_env(sandbox)
    )
    assert run.failed(exit_code, kind)["provider_code"] == code
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind either


@pytest.mark.parametrize(
    ("fault", "exit_code", "kind"),
    [
        ({"status": 429}, 75, "transient"),
        ({"status": 503}, 75, "transient"),
        ({"status": 500}, 75, "transient"),
        ({"status": 400, "code": "INVALID_ARGUMENT"}, 1, "permanent"),
        ({"kind": "error", "drop": True}, 75, "transient"),
    ],
)
def test_provider_errors(
    sandbox: SandboxProcess, fast: None, tmp_path: Path, fault: dict[str, object], exit_code: int, kind: str
) -> None:
    sandbox.fault(provider="gemini", count=1, **fault)
    run = run_script(
        "generate_asset", "--prompt", "A heron", "--output", tmp_path / "x.png", env=script_env(sandbox)
    )
    run.failed(exit_code, kind)


def test_wrong_key_is_permanent_and_never_printed(sandbox: SandboxProcess, tmp_path: Path) -> None:
    wrong = "AIzaWRONG-0123456789-abcdefghijkl"
    env = script_env(sandbox, GEMINI_API_KEY=wrong)
    run = run_script("generate_asset", "--prompt", "A heron", "--output", tmp_path / "x.png", env=env)
    assert run.failed(1, "permanent")["provider_code"] == "API_KEY_INVALID"
    assert "GEMINI_API_KEY" in run.last["message"]
    for secret in [wrong, *secrets_of(sandbox)]:
        assert secret not in run.stdout + run.stderr


def test_missing_key_is_a_usage_error(sandbox: SandboxProcess, tmp_path: Path) -> None:
    env = script_env(sandbox, GEMINI_API_KEY=None)
    run = run_script("generate_asset", "--prompt", "A heron", "--output", tmp_path / "x.png", env=env)
    assert "GEMINI_API_KEY" in run.failed(2, "usage")["message"]


def test_bad_arguments_are_usage_errors(sandbox: SandboxProcess, tmp_path: Path) -> None:
    output = tmp_path / "x.png"
    run = run_script(
        "generate_asset",
        "--prompt",
        "x",
        "--aspect-ratio",
        "7:3",
        "--output",
        output,
        env=script_env(sandbox),
    )
    assert "--aspect-ratio" in run.failed(2, "usage")["message"]


def test_storyboard_in_the_design_format(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    output = tmp_path / "board" / "storyboard.json"
    run = run_script(
        "generate_storyboard", "--title", "The Heron's Patience", "--topic", "A grey heron fishing at dawn",
        "--direction", "Calm, observational, three beats: arrival, waiting, the strike", "--scenes", "3",
        "--output", output, env=script_env(sandbox),
    )  # fmt: skip
    result = run.result
    assert result["meta"]["scenes"] == 3
    assert result["cost_usd"] > 0
    board = json.loads(output.read_text())
    assert [s["key"] for s in board["scenes"]] == ["s01", "s02", "s03"]
    keys = {a["key"] for a in board["assets"]}
    for scene in board["scenes"]:
        assert scene["narration"].strip()
        assert scene["frame"]["environment"] in keys
        assert scene["frame"]["character"] is None or scene["frame"]["character"] in keys
    assert {a["kind"] for a in board["assets"]} <= {"environment", "character"}
    # The sandbox answers the schema's composition choices too: every subject is placed and framed.
    for scene in board["scenes"]:
        if scene["frame"]["character"]:
            assert scene["frame"]["placement"] in ("left", "centre", "right")
            assert scene["frame"]["framing"] in ("wide", "medium", "close")


def test_blocked_storyboard_prompt_is_permanent(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    run = run_script(
        "generate_storyboard", "--title", "T", "--topic", "[sandbox:block-prompt]", "--direction", "d",
        "--scenes", "2", "--output", tmp_path / "s.json", env=script_env(sandbox),
    )  # fmt: skip
    run.failed(1, "permanent")
