"""One price table: what a script reports it cost is what the daemon books for the same call.

Each provider script runs against the sandbox with an operator's own prices (PRICING_FILE, as the
daemon passes it); the daemon's PricedCosts then prices the usage the script reported with the same
file. Both must agree to the micro-dollar, and follow the file: a price changed there changes both.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from PIL import Image

from daemon.costs import PricedCosts, load_pricing_file
from daemon.paths import DEFAULT_PRICING_FILE
from services.pricing import to_micros
from tests.integration.test_scripts_support import run_script, script_env
from tests.support.sandbox_proc import SandboxProcess


def _my_prices(folder: Path) -> Path:
    table = yaml.safe_load((DEFAULT_PRICING_FILE).read_text())
    table["gemini"]["image"]["output_per_million_tokens"] = 25.0
    table["gemini"]["text"]["output_per_million_tokens"] = 2.0
    table["kling"]["unit_price"] = 0.11
    table["elevenlabs"]["credit_price"] = 0.000165
    path = folder / "my-pricing.yaml"
    path.write_text(yaml.safe_dump(table))
    return path


def test_each_script_reports_the_cost_the_daemon_books(fresh_sandbox: SandboxProcess, tmp_path: Path) -> None:
    sandbox = _quick(fresh_sandbox)
    prices = _my_prices(tmp_path)
    env = script_env(sandbox, PRICING_FILE=str(prices))
    frame = tmp_path / "frame.png"
    Image.new("RGB", (1280, 720), (80, 110, 130)).save(frame)
    runs = {
        "storyboard": ("generate_storyboard", "--title", "Heron", "--topic", "A heron at dawn", "--direction",
                       "Calm", "--scenes", "2", "--output", tmp_path / "storyboard.json"),
        "asset": ("generate_asset", "--prompt", "Misty river delta at dawn",
                  "--output", tmp_path / "env.png"),
        "clip": ("generate_video", "--image", frame, "--prompt", "The heron lifts one foot.",
                 "--duration", "5", "--external-id", "price_table_clip", "--output", tmp_path / "clip.mp4",
                 "--poll-interval", "0.2"),
        "narration": ("generate_audio", "--text", "At first light, the delta belongs to the patient.",
                      "--voice-id", "JBFqnCBsd6RMkjVDRZzb", "--output", tmp_path / "narration.mp3"),
        "sfx": ("generate_sound_effects", "--prompt", "River ambience", "--duration", "4",
                "--output", tmp_path / "sfx.mp3"),
    }  # fmt: skip
    daemon = PricedCosts(load_pricing_file(prices))
    shipped = PricedCosts(load_pricing_file(DEFAULT_PRICING_FILE))
    for kind, (script, *args) in runs.items():
        result = run_script(script, *args, env=env).result
        reported = to_micros(Decimal(str(result["cost_usd"])))
        assert reported > 0, kind
        booked = daemon.actual_micros(kind, result["meta"], None)  # from the usage alone
        assert abs(booked - reported) <= 1, (kind, booked, reported, result["meta"])
        # The operator's prices, not list prices, reached the script.
        assert shipped.actual_micros(kind, result["meta"], None) != booked, kind


def test_a_broken_price_table_stops_a_script_before_it_pays(
    fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox = _quick(fresh_sandbox)
    broken = tmp_path / "pricing.yaml"
    broken.write_text("kling: {unit_price: cheap}\n")
    before = len(sandbox.calls("elevenlabs"))
    env = script_env(sandbox, PRICING_FILE=str(broken))
    run = run_script("generate_sound_effects", "--prompt", "Rain", "--duration", "3",
                     "--output", tmp_path / "sfx.mp3", env=env)  # fmt: skip
    error = run.failed(2, "usage")
    assert str(broken) in error["message"] and "PRICING_FILE" in error["message"]
    assert len(sandbox.calls("elevenlabs")) == before  # nothing was paid
    assert not (tmp_path / "sfx.mp3").exists()


def _quick(sandbox: SandboxProcess) -> SandboxProcess:
    sandbox.configure(kling_seconds=1, gemini_image_seconds=0, gemini_text_seconds=0, tts_seconds=0,
                      sfx_seconds=0)  # fmt: skip
    return sandbox
