"""What a claim hands the worker, how its attempt is named, and what decides who goes first."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon.budget import Budget, day_of

BUDGET_TRIES = 4  # over-budget tasks a claim passes over before it gives up


@dataclass(frozen=True)
class Claimed:
    item_id: int
    task_id: int
    channel_id: str
    project_slug: str
    kind: str
    key: str
    provider: str
    input: dict[str, Any]
    input_hash: str
    attempt_no: int
    lease_token: str
    idempotency_key: str
    attempt_output: str  # relative to the workspace
    # The provider job an earlier attempt of this generation recorded: resumed, never paid again.
    resume: str | None
    deps: dict[str, str] = field(default_factory=dict)  # dependency key -> its output path


def idempotency_key(channel: str, slug: str, key: str, input_hash: str, generation: int) -> str:
    """Deterministic per (item, input, generation), shared by the generation's attempts: a retry
    after a crash or a timeout submits under the same key, so the provider's copy is found, not
    paid for again. Unique per provider account; readable in logs."""
    digest = hashlib.sha256(f"{channel}/{slug}/{key}/{input_hash}/{generation}".encode()).hexdigest()[:12]
    return f"{slug[:16]}-{key[:24]}-g{generation}-{digest}"


@dataclass(frozen=True)
class ClaimPolicy:
    """Who goes first and what may be spent: channel weights, budgets, and the budget day. A
    snapshot: a change in the channel files makes a new one (ChannelWatch), never edits this."""

    weights: Mapping[str, int] = field(default_factory=dict)
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    day_of: Callable[[datetime], str] = field(default_factory=lambda: day_of("UTC"))


@dataclass(frozen=True)
class ClaimResult:
    """What a claim took, in the fair order (none: no free slot, or nothing eligible and
    affordable), and the tasks it found over budget with the operator's message: the caller makes
    them wait, outside the claim's transaction, so a claim never takes a task lock while it holds
    an item lock."""

    items: tuple[Claimed, ...] = ()
    over_budget: tuple[tuple[int, str], ...] = ()

    @property
    def claimed(self) -> Claimed | None:
        """The item a claim of one took, if any."""
        assert len(self.items) <= 1, "a claim of several items: read .items"
        return self.items[0] if self.items else None


DEFAULT_POLICY = ClaimPolicy()


@dataclass(frozen=True)
class ClaimRequest:
    """A claim's arguments, for a claim made after something else (a batch of completions) rather
    than by the worker's loop: up to `limit` items of `provider` for `owner`."""

    provider: str
    owner: str
    now: datetime
    ttl: float
    extension_for: Mapping[str, str]
    policy: ClaimPolicy = DEFAULT_POLICY
    limit: int = 1
