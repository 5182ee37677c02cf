"""The sandbox's free, read-only account calls, shaped as the real APIs answer them (what `doctor`
checks a key with): Gemini's models.list and models.get, ElevenLabs' user and subscription."""

from __future__ import annotations

import json

import httpx

from tests.support.sandbox_proc import SandboxProcess


def _creds(sandbox: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((sandbox.state_dir / "credentials.json").read_text()))


def test_gemini_lists_its_models_in_pages_and_refuses_a_wrong_key(sandbox: SandboxProcess) -> None:
    key = {"x-goog-api-key": _creds(sandbox)["gemini_api_key"]}
    url = f"{sandbox.base('gemini')}/v1beta/models"
    first = httpx.get(url, headers=key, params={"pageSize": 2}, timeout=30).json()
    assert len(first["models"]) == 2 and first["nextPageToken"]
    names, token = [m["name"] for m in first["models"]], first["nextPageToken"]
    while token:
        page = httpx.get(url, headers=key, params={"pageSize": 2, "pageToken": token}, timeout=30).json()
        names += [m["name"] for m in page["models"]]
        token = page.get("nextPageToken")
    everything = httpx.get(url, headers=key, params={"pageSize": 1000}, timeout=30).json()
    assert "nextPageToken" not in everything
    assert names == [m["name"] for m in everything["models"]]
    assert {"models/gemini-2.5-flash", "models/gemini-2.5-flash-image"} <= set(names)
    one = httpx.get(f"{url}/gemini-2.5-flash-image", headers=key, timeout=30).json()
    assert one["name"] == "models/gemini-2.5-flash-image"
    assert "generateContent" in one["supportedGenerationMethods"]
    missing = httpx.get(f"{url}/gemini-0-nothing", headers=key, timeout=30)
    assert (missing.status_code, missing.json()["error"]["status"]) == (404, "NOT_FOUND")
    bad_token = httpx.get(url, headers=key, params={"pageToken": "not-ours"}, timeout=30)
    assert (bad_token.status_code, bad_token.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")

    wrong = httpx.get(url, headers={"x-goog-api-key": "AIzaNotTheKey0000"}, timeout=30)
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_elevenlabs_subscription_counts_the_characters_used(fresh_sandbox: SandboxProcess) -> None:
    key = {"xi-api-key": _creds(fresh_sandbox)["elevenlabs_api_key"]}
    base = f"{fresh_sandbox.base('elevenlabs')}/v1"
    before = httpx.get(f"{base}/user/subscription", headers=key, timeout=30).json()
    assert (before["tier"], before["character_count"], before["character_limit"]) == ("creator", 0, 100_000)
    assert before["next_character_count_reset_unix"] > 0
    text = "At first light the delta belongs to the patient."
    spoken = httpx.post(
        f"{base}/text-to-speech/JBFqnCBsd6RMkjVDRZzb",
        headers=key,
        json={"text": text, "model_id": "eleven_multilingual_v2"},
        timeout=60,
    )
    assert spoken.status_code == 200
    after = httpx.get(f"{base}/user", headers=key, timeout=30).json()
    assert after["subscription"]["character_count"] == len(text)
    assert key["xi-api-key"] not in json.dumps(after)
    wrong = httpx.get(f"{base}/user/subscription", headers={"xi-api-key": "sk_nope"}, timeout=30)
    assert (wrong.status_code, wrong.json()["detail"]["status"]) == (401, "invalid_api_key")
