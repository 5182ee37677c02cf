"""The sandbox's accounts: one key per provider, made once per state folder and kept there.

Tests that prove secrets never leak pre-write `credentials.json` with recognisable values.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

FILE = "credentials.json"


def _fresh() -> dict[str, str]:
    return {
        "notion_token": "ntn_" + secrets.token_hex(20),
        # A second Notion token that acts as a person in the workspace: tests and the demo use it to
        # make the operator's edits, so last_edited_by is a person, not the integration's bot.
        "notion_operator_token": "ntn_op_" + secrets.token_hex(16),
        "notion_bot_id": _uuid(),
        "notion_operator_id": _uuid(),
        "notion_root_page_id": _uuid(),
        # The Notion webhook subscription's verification token: it signs every event.
        "notion_webhook_token": "secret_" + secrets.token_urlsafe(32),
        "gemini_api_key": "AIza" + secrets.token_urlsafe(26),
        "kling_access_key": "ak_" + secrets.token_hex(12),
        "kling_secret_key": "sk_" + secrets.token_hex(20),
        "elevenlabs_api_key": "sk_" + secrets.token_hex(24),
        # A Google Cloud project's OAuth client (an installed app); the id names the project whose
        # YouTube quota is counted.
        "youtube_client_id": _google_client_id(),
        "youtube_client_secret": "GOCSPX-" + secrets.token_urlsafe(21),
    }


def _google_client_id() -> str:
    """`<project number>-<32 characters>.apps.googleusercontent.com`, as Google Cloud makes them."""
    return f"{secrets.randbelow(10**12):012d}-{secrets.token_hex(16)}.apps.googleusercontent.com"


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def load_or_create(state_dir: Path) -> dict[str, str]:
    path = state_dir / FILE
    creds = _fresh()
    if path.exists():
        creds.update(json.loads(path.read_text()))
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds
