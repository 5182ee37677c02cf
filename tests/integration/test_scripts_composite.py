"""create_composite.py on the sandbox's own images: a 1920x1080 frame with the key colour gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.test_scripts_support import local_env, run_script, script_env
from tests.support.sandbox_proc import SandboxProcess

CHARACTER_PROMPT = "Grey heron standing, on a solid flat #00FF00 background"


def _near_key(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return g > 180 and r < 90 and b < 90


def _pixels(image: Image.Image) -> Iterator[tuple[int, int, int]]:
    raw = image.convert("RGB").tobytes()
    return zip(raw[0::3], raw[1::3], raw[2::3], strict=True)


@pytest.fixture(scope="module")
def images(sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("composite")
    environment, character = folder / "env.png", folder / "char.png"
    before = sandbox.get("/_sandbox/config")["gemini_image_seconds"]
    sandbox.configure(gemini_image_seconds=0.0)
    env = script_env(sandbox)
    try:
        assert run_script(
            "generate_asset", "--prompt", "Misty river delta", "--output", environment, env=env
        ).result
        args = ["--prompt", CHARACTER_PROMPT, "--aspect-ratio", "1:1", "--output", character]
        assert run_script("generate_asset", *args, env=env).result
    finally:
        sandbox.configure(gemini_image_seconds=before)
    return environment, character


def test_character_is_keyed_onto_the_environment(images: tuple[Path, Path], tmp_path: Path) -> None:
    environment, character = images
    with Image.open(character) as source:
        assert sum(_near_key(p) for p in _pixels(source)) > 0.2 * source.width * source.height  # a real key
    args = ["--environment", environment, "--character", character, "--output", tmp_path / "frame.png"]
    result = run_script("create_composite", *args, env=local_env()).result
    assert (result["provider"], result["cost_usd"]) == ("local", 0)
    x0, y0, x1, y1 = result["meta"]["character_box"]
    with Image.open(tmp_path / "frame.png") as frame:
        assert frame.size == (1920, 1080)
        assert not any(_near_key(p) for p in _pixels(frame.crop((x0, y0, x1, y1))))
    assert abs((y1 - y0) - round(0.55 * 1080)) <= 2
    assert abs((x0 + x1) / 2 - 960) <= 2


def test_environment_alone_is_cover_fitted(images: tuple[Path, Path], tmp_path: Path) -> None:
    run = run_script(
        "create_composite", "--environment", images[0], "--output", tmp_path / "f.png", env=local_env()
    )
    assert "character_box" not in run.result["meta"]
    with Image.open(tmp_path / "f.png") as frame:
        assert frame.size == (1920, 1080)


def test_missing_input_is_permanent(tmp_path: Path) -> None:
    args = ["--environment", tmp_path / "nope.png", "--output", tmp_path / "f.png"]
    run = run_script("create_composite", *args, env=local_env())
    assert "nope.png" in run.failed(1, "permanent")["message"]


def test_bad_key_colour_is_a_usage_error(tmp_path: Path) -> None:
    args = ["--environment", tmp_path / "e.png", "--key-color", "green", "--output", tmp_path / "f.png"]
    run_script("create_composite", *args, env=local_env()).failed(2, "usage")
