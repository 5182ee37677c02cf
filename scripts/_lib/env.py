"""Provider keys and base URLs come from the environment (the daemon passes them to each script)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from scripts._lib.errors import usage

TRACE_VARIABLE = "PIPELINE_TRACE"


def require(name: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if not value:
        raise usage(
            f"The environment variable {name} is not set; export it (the daemon passes it from its settings)."
        )
    return value


def base_url(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(name, "").strip() or default).rstrip("/")


def trace(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(TRACE_VARIABLE, "").strip() or None
