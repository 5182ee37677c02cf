"""Hypothesis budgets: `ci` (the default, sized for every `make test`) and `deep` (exploration, the
budgets the properties were first explored with), chosen by HYPOTHESIS_PROFILE.

A test with a budget of its own asks `examples(ci=..., deep=...)`; a bare @given takes the profile's
max_examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILES = {"ci": 25, "deep": 100}  # max_examples of a bare @given


def active() -> str:
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if name not in PROFILES:
        raise RuntimeError(f"HYPOTHESIS_PROFILE={name!r} is not a profile; use one of: {', '.join(PROFILES)}")
    return name


def register() -> None:
    """Registers both profiles and loads the active one (tests/conftest.py, before collection)."""
    for name, budget in PROFILES.items():
        settings.register_profile(name, max_examples=budget, deadline=None)
    settings.load_profile(active())


def examples(*, ci: int, deep: int) -> int:
    """A test's own budget under the active profile."""
    return deep if active() == "deep" else ci
