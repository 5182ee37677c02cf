"""JSON lines on stdout: progress events, then one result or one error line (the script contract)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from scripts._lib.errors import ScriptError

# Values of these variables never reach stdout, whatever a provider echoes back in an error.
SECRET_VARIABLES = (
    "GEMINI_API_KEY",
    "KLING_ACCESS_KEY",
    "KLING_SECRET_KEY",
    "ELEVENLABS_API_KEY",
    "YOUTUBE_CLIENT_SECRET",
    "YOUTUBE_REFRESH_TOKEN",
)


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        value = env.get(name, "")
        # Short values would mangle ordinary words; real keys are long.
        if len(value) >= 8:
            text = text.replace(value, f"<{name}>")
    return text


def emit(event: str, stream: TextIO | None = None, **fields: Any) -> None:
    """One JSON line, flushed at once: the daemon records job ids while the script still runs."""
    line = json.dumps({"event": event, **fields}, ensure_ascii=False, default=str)
    out = sys.stdout if stream is None else stream
    out.write(redact(line) + "\n")
    out.flush()


def emit_paying(provider: str) -> None:
    """Before a paid call that cannot be collected later (the provider charges as it answers and
    keeps nothing to fetch again): a daemon stopping now lets the run finish rather than pay the
    call again on the next one."""
    emit("paying", provider=provider)


def emit_result(output: str, cost_usd: float, provider: str, meta: dict[str, Any]) -> None:
    emit("result", output=output, cost_usd=round(cost_usd, 6), provider=provider, meta=meta)


def emit_error(error: ScriptError) -> None:
    hint: dict[str, Any] = {} if error.retry_after_s is None else {"retry_after_s": error.retry_after_s}
    emit("error", kind=error.kind, message=error.message, provider_code=error.provider_code, **hint)
