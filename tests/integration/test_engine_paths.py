"""One engine, two databases: the same actions on SQLite's path and on PostgreSQL's end in the same rows.

Each example builds one world on both databases (tasks of random DAGs over two channels, review
gates on and off, weights, budgets some steps cross) and plays one sequence of actions on both,
with one clock: claims of one or several items by three daemons, completions (current ones;
retried after a lost answer; stale ones whose lease was handed back, swept or cancelled; several
in one transaction, as the worker commits scripts that ended together, with the places they free
claimed again),
transient failures, failures, approvals, pauses and resumptions, cancels. After every action both
must have answered alike and hold the same rows: items, tasks, attempts, the ledger, the slots
and the channels' passes.

The paths under comparison are every way the engine's rules are spelled: SQLite's statements one
at a time; PostgreSQL's claim (one statement, or two transactions when the channel has a budget);
PostgreSQL's completion as one statement (with a claim after it in its transaction), and as the
statement sequence a storyboard's plan expansion joins (the storyboards here complete with a
hook). Changing one rule's spelling on one path (for example the unblock check in COMPLETE_PG)
makes this test fail.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon import lease
from daemon.budget import Budget
from daemon.claim import Claimed, ClaimPolicy, ClaimRequest, ClaimResult, claim, ensure_slots
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Completion, Success, complete, complete_and_claim, complete_many, fail
from daemon.dag import approve_gate, refresh
from daemon.db.engine import make_engine
from daemon.db.models import Attempt, ChannelShare, Item, ItemEdge, Ledger, ProviderSlot, Task
from daemon.tasks import cancel_task, pause_task
from tests.support.profiles import examples

pytestmark = pytest.mark.postgres

T = TypeVar("T")
CHANNELS = ("north", "south")
OWNERS = ("d1", "d2", "d3")
LIMITS = {"gemini": 2, "kling": 1, "elevenlabs": 2, "local": 1}
TTL = 30.0
# (kind, provider); a storyboard completes through the plan-expansion path.
KINDS = (
    ("storyboard", "gemini"),
    ("asset", "gemini"),
    ("clip", "kling"),
    ("narration", "elevenlabs"),
    ("storyboard_gate", "operator"),
    ("final_gate", "operator"),
)
TABLES = ("ledger", "attempt", "item_edge", "provider_slot", "channel_share", "budget_lock", "item", "task")


@dataclass(frozen=True)
class ItemSpec:
    kind: str
    provider: str
    deps: frozenset[int]
    priority: int
    estimate: int
    gate_on: bool


@dataclass(frozen=True)
class TaskSpec:
    channel: str
    priority: int
    items: tuple[ItemSpec, ...]
    assembly: bool


@dataclass(frozen=True)
class WorldSpec:
    tasks: tuple[TaskSpec, ...]
    weights: dict[str, int]
    budgets: dict[str, Budget]


@st.composite
def items(draw: st.DrawFn) -> tuple[ItemSpec, ...]:
    count = draw(st.integers(2, 4))
    out = []
    for k in range(count):
        kind, provider = draw(st.sampled_from(KINDS))
        deps = draw(st.frozensets(st.integers(0, k - 1), max_size=3)) if k else frozenset[int]()
        out.append(
            ItemSpec(
                kind,
                provider,
                deps,
                draw(st.integers(0, 2)),
                draw(st.sampled_from((0, 10_000, 40_000, 150_000))),
                draw(st.booleans()),
            )
        )
    return tuple(out)


budgets = st.builds(
    Budget,
    per_video_micros=st.sampled_from((50_000, 200_000, 10**9)),
    per_day_micros=st.sampled_from((100_000, 300_000, 10**9)),
)
worlds = st.builds(
    WorldSpec,
    tasks=st.lists(
        st.builds(TaskSpec, st.sampled_from(CHANNELS), st.integers(0, 2), items(), st.booleans()),
        min_size=1,
        max_size=2,
    ).map(tuple),
    weights=st.fixed_dictionaries({c: st.integers(1, 3) for c in CHANNELS}),
    # One channel at least has a budget (sometimes one no video reaches): the budgeted claim's path,
    # and the unbudgeted one's through the other channel, in most examples.
    budgets=st.dictionaries(st.sampled_from(CHANNELS), budgets, min_size=1),
)
# Which claim (counted from the latest) or task an action is about, modulo how many there are.
PICK = st.one_of(st.integers(0, 2), st.integers(0, 40))
ACTIONS = {
    # A daemon claims as the worker does: the providers in turn from one of them, the first with work.
    # Up to as many items as its free places: one claim may take several (of one provider).
    "claim": st.tuples(
        st.just("claim"),
        st.integers(0, len(LIMITS) - 1),
        st.tuples(st.sampled_from(OWNERS), st.sampled_from((1, 1, 2, 3))),
    ),
    "complete": st.tuples(st.just("complete"), PICK, st.sampled_from((0, 7_000, 90_000))),
    # Scripts that ended together: the worker commits their completions in one transaction, and
    # (places > 0) claims the places they free again: in that transaction on PostgreSQL when it
    # can, after it on SQLite.
    "complete several": st.tuples(
        st.just("complete several"), PICK, st.tuples(st.integers(2, 4), st.sampled_from((0, 0, 1, 2, 3)))
    ),
    # A completion sent again (its first answer was lost), or a stale daemon's: any claim.
    "complete again": st.tuples(st.just("complete again"), PICK, st.sampled_from((0, 7_000))),
    "release": st.tuples(st.just("release"), PICK, st.sampled_from((0.0, 20.0))),
    "fail": st.tuples(st.just("fail"), PICK, st.just(0)).filter(lambda a: a[1] % 3 == 0),
    "approve": st.tuples(st.just("approve"), PICK, st.sampled_from(("storyboard_gate", "final_gate"))),
    "approve both": st.tuples(st.just("approve"), PICK, st.just("both")),
    "pause": st.tuples(st.just("pause"), PICK, st.booleans()),
    # Time passes; a sweep hands back the leases that ran out (and their grace) meanwhile.
    "wait": st.tuples(st.just("wait"), st.sampled_from((1.0, TTL + 1, 3 * TTL)), st.booleans()),
    "cancel": st.tuples(st.just("cancel"), PICK, st.just(0)).filter(lambda a: a[1] % 3 == 0),
}
# Mostly claims and completions, so that videos get far; the rest now and then.
WITHOUT_CLAIMS = ("claim", "claim", "claim", "approve", "approve both", "pause", "wait")
WITH_CLAIMS = ("claim",) * 5 + ("complete",) * 3 + ("complete several",) * 3 + ("approve both",) * 2 + (
    "wait",) * 2 + ("complete again", "release", "approve", "pause", "fail", "cancel")  # fmt: skip


@dataclass
class Side:
    """One database, with what its daemons hold."""

    name: str
    engine: AsyncEngine
    workspace: Path
    claims: list[Claimed] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # lease token -> claim number
    ended: set[int] = field(default_factory=set)  # claims whose daemon completed, released or failed
    last: int = 0  # the claim the last action was about
    task_ids: list[int] = field(default_factory=list)


async def _reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:  # rowid tables: the next id is 1 again once a table is empty
                await conn.execute(text(f"DELETE FROM {table}"))
    await ensure_slots(engine, LIMITS)


async def _build(side: Side, world: WorldSpec, now: datetime) -> None:
    await _reset(side.engine)
    side.claims.clear()
    side.tokens.clear()
    side.ended.clear()
    side.task_ids.clear()
    async with side.engine.begin() as conn:
        for n, spec in enumerate(world.tasks):
            task_id = (
                await conn.execute(
                    insert(Task)
                    .values(channel_id=spec.channel, project_slug=f"p{n}", state="active",
                            priority=spec.priority, created_at=now, updated_at=now)
                    .returning(Task.id)
                )
            ).scalar_one()  # fmt: skip
            side.task_ids.append(task_id)
            ids = [await _item(conn, task_id, spec.channel, f"{s.kind}_{k}", s, now) for k, s in
                   enumerate(spec.items)]  # fmt: skip
            edges = [
                {"item_id": ids[k], "depends_on": ids[d]} for k, s in enumerate(spec.items) for d in s.deps
            ]
            if spec.assembly:  # the final cut, after every other item
                last = ItemSpec("assembly", "local", frozenset(), 1, 0, True)
                assembly = await _item(conn, task_id, spec.channel, "assembly", last, now)
                edges += [{"item_id": assembly, "depends_on": i} for i in ids]
            if edges:
                await conn.execute(insert(ItemEdge), edges)
            await refresh(conn, task_id, now)


async def _item(
    conn: AsyncConnection, task_id: int, channel: str, key: str, s: ItemSpec, now: datetime
) -> int:
    data: dict[str, Any] = {"on": s.gate_on} if s.provider == "operator" else {"prompt": key}
    return (
        await conn.execute(
            insert(Item)
            .values(task_id=task_id, channel_id=channel, kind=s.kind, key=key, input=data,
                    input_hash=f"h-{key}", state="blocked", provider=s.provider, priority=s.priority,
                    next_attempt_at=now, estimate_micros=s.estimate, created_at=now, updated_at=now)
            .returning(Item.id)
        )
    ).scalar_one()  # fmt: skip


async def _rows(side: Side) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the engine writes, with lease tokens as the claim that holds them (tokens are
    random) and ids in place (both databases number rows from 1 in the same order)."""

    def held(token: str | None) -> int | str | None:
        return None if token is None else side.tokens.get(token, "unknown token")

    async with side.engine.connect() as conn:
        tasks = (await conn.execute(select(Task.id, Task.state, Task.error, Task.final_video_path,
                                           Task.updated_at).order_by(Task.id))).all()  # fmt: skip
        item_rows = (
            await conn.execute(
                select(Item.id, Item.state, Item.attempts, Item.output_path, Item.cost_micros,
                       Item.lease_owner, Item.lease_token, Item.lease_expires_at, Item.next_attempt_at,
                       Item.finished_at, Item.error).order_by(Item.id)
            )
        ).all()  # fmt: skip
        attempts = (
            await conn.execute(
                select(Attempt.item_id, Attempt.number, Attempt.idempotency_key, Attempt.output_path,
                       Attempt.lease_token, Attempt.owner, Attempt.outcome, Attempt.cost_micros,
                       Attempt.usage, Attempt.exit_code, Attempt.finished_at)
                .order_by(Attempt.item_id, Attempt.number)
            )
        ).all()  # fmt: skip
        ledger = (
            await conn.execute(
                select(Ledger.task_id, Ledger.item_id, Ledger.attempt_no, Ledger.channel_id, Ledger.entry,
                       Ledger.amount_micros, Ledger.day, Ledger.open)
                .order_by(Ledger.item_id, Ledger.attempt_no, Ledger.entry)
            )
        ).all()  # fmt: skip
        slots = (
            await conn.execute(
                select(ProviderSlot.provider, ProviderSlot.slot_no, ProviderSlot.item_id,
                       ProviderSlot.lease_token, ProviderSlot.expires_at)
                .order_by(ProviderSlot.provider, ProviderSlot.slot_no)
            )
        ).all()  # fmt: skip
        shares = (
            await conn.execute(
                select(ChannelShare.provider, ChannelShare.channel_id, ChannelShare.turn).order_by(
                    ChannelShare.provider, ChannelShare.channel_id
                )
            )
        ).all()
    return {
        "task": [tuple(r) for r in tasks],
        "item": [(*r[:6], held(r.lease_token), *r[7:]) for r in item_rows],
        "attempt": [(*r[:4], held(r.lease_token), *r[5:]) for r in attempts],
        "ledger": [tuple(r) for r in ledger],
        "slot": [(*r[:3], held(r.lease_token), r.expires_at) for r in slots],
        "share": [tuple(r) for r in shares],
    }


def _answer(result: ClaimResult) -> tuple[Any, ...]:
    got = [
        (c.item_id, c.task_id, c.channel_id, c.project_slug, c.kind, c.key, c.provider, c.input,
         c.input_hash, c.attempt_no, c.idempotency_key, c.attempt_output, c.resume, c.deps)
        for c in result.items
    ]  # fmt: skip
    return got, result.over_budget


async def _hook(conn: AsyncConnection, task_id: int, storyboard: Path) -> None:
    """The plan's expansion, as the pipeline's: a write of its own in the completion's transaction."""
    assert storyboard.is_file()
    await conn.execute(update(Task).where(Task.id == task_id).values(title=storyboard.name))


async def _claim(side: Side, first: int, extra: tuple[str, int], now: datetime, policy: ClaimPolicy) -> Any:
    providers = sorted(LIMITS)
    answers = []
    owner, limit = extra
    for provider in providers[first:] + providers[:first]:
        result = await claim(side.engine, provider, owner, now, TTL, EXTENSIONS, policy, limit=limit)
        answers.append(_answer(result))
        for c in result.items:
            side.tokens[c.lease_token] = len(side.claims)
            side.claims.append(c)
        if result.items:
            break
    return answers


async def _act(side: Side, action: tuple[Any, ...], now: datetime, policy: ClaimPolicy) -> Any:
    kind, pick, extra = action
    engine = side.engine
    if kind == "claim":
        return await _claim(side, pick, extra, now, policy)
    if kind in ("approve", "pause", "cancel"):
        task_id = side.task_ids[pick % len(side.task_ids)]
        if kind == "approve":
            gates = ("storyboard_gate", "final_gate") if extra == "both" else (extra,)
            return [await approve_gate(engine, task_id, gate, now) for gate in gates]
        if kind == "cancel":
            return await cancel_task(engine, task_id, now)
        if extra:
            return await pause_task(engine, task_id, now)
        async with engine.begin() as conn:  # the operator queues it again
            await conn.execute(
                update(Task).where(Task.id == task_id, Task.state == "paused").values(state="active")
            )
        return None
    if kind == "wait":
        return await lease.sweep_expired(engine, now, TTL) if extra else None
    # A daemon ends the claims it still holds; a stale daemon, or a retry, any of them.
    held = [n for n in range(len(side.claims)) if n not in side.ended]
    if kind == "complete several":
        return await _complete_several(side, held, pick, extra, now, policy)
    pool = held if held and kind != "complete again" else list(range(len(side.claims)))
    number = pool[-1 - pick % len(pool)]
    side.ended.add(number)
    side.last = number
    c = side.claims[number]
    if kind in ("complete", "complete again"):
        return await complete(
            engine,
            c,
            _produced(side, c, extra),
            workspace=side.workspace,
            now=now,
            final_path=final_path(c.kind, c.key, c.channel_id, c.project_slug),
            on_storyboard=_hook,
            budget_day=policy.day_of(now),
        )
    if kind == "release":
        return await lease.release(
            engine, c.item_id, c.lease_token, now, outcome="transient",
            next_attempt_at=now + timedelta(seconds=extra), message="busy", exit_code=75,
        )  # fmt: skip
    return await fail(engine, c, "refused", now, exit_code=1)


def _produced(side: Side, c: Claimed, cost: int) -> Success:
    """The claim's script wrote its output and reported `cost`."""
    produced = side.workspace / c.attempt_output
    produced.parent.mkdir(parents=True, exist_ok=True)
    if not produced.exists():
        produced.write_bytes(b"output")
    return Success(c.attempt_output, cost, {"calls": 1, "cost": cost})


async def _complete_several(
    side: Side, held: list[int], pick: int, extra: tuple[int, int], now: datetime, policy: ClaimPolicy
) -> tuple[list[str], Any]:
    """The worker's batch: up to `count` claims the daemons hold (a storyboard, which expands the
    plan, completes alone), newest first from `pick`, and now and then a stale one among them;
    then up to `places` items of the first one's provider claimed for its daemon."""
    count, places = extra
    pool = [n for n in held if side.claims[n].kind != "storyboard"]
    if not pool:
        return [], None
    start = pick % len(pool)
    chosen = (pool[::-1] * 2)[start : start + min(count, len(pool))]
    if pick % 4 == 3 and len(side.claims) > 1:  # a stale or retried one too, unless already chosen
        extra = (pick * 7) % len(side.claims)
        if extra not in chosen and side.claims[extra].kind != "storyboard":
            chosen.append(extra)
    side.ended.update(chosen)
    side.last = chosen[0]
    batch = [
        Completion(
            c,
            _produced(side, c, 7_000 * n),
            final_path(c.kind, c.key, c.channel_id, c.project_slug),
            now,
            policy.day_of(now),
        )
        for n, c in enumerate(side.claims[n] for n in chosen)
    ]
    if not places:
        return await complete_many(side.engine, batch, workspace=side.workspace), None
    first = side.claims[chosen[0]]
    then = ClaimRequest(first.provider, "d1", now, TTL, EXTENSIONS, policy, limit=places)
    outcomes, taken = await complete_and_claim(side.engine, batch, then, workspace=side.workspace)
    assert taken is not None
    for c in taken.items:
        side.tokens[c.lease_token] = len(side.claims)
        side.claims.append(c)
    return outcomes, _answer(taken)


@dataclass
class Both:
    runner: asyncio.Runner
    sides: tuple[Side, Side]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


@pytest.mark.timeout(480)  # a failure is shrunk, which takes Hypothesis up to five minutes here
def test_sqlite_and_postgresql_paths_end_in_the_same_rows(
    tmp_path: Path, both_databases: tuple[str, str]
) -> None:
    lite_url, pg_url = both_databases
    with asyncio.Runner() as runner:
        both = Both(
            runner,
            (
                Side("sqlite", make_engine(lite_url), tmp_path / "ws-sqlite"),
                Side("postgresql", make_engine(pg_url), tmp_path / "ws-postgresql"),
            ),
        )
        try:
            _compare(both)
        finally:
            for side in both.sides:
                runner.run(side.engine.dispose())


def _compare(both: Both) -> None:
    @settings(
        max_examples=examples(ci=40, deep=400),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(world=worlds, data=st.data())
    def same(world: WorldSpec, data: st.DataObject) -> None:
        now = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
        policy = ClaimPolicy(weights=world.weights, budgets=world.budgets)
        for side in both.sides:
            both.run(_build(side, world, now))
        lite, pg = both.sides
        assert both.run(_rows(lite)) == both.run(_rows(pg)), "the same world"
        for step in range(data.draw(st.integers(10, 80), label="steps")):
            kinds = WITH_CLAIMS if lite.claims else WITHOUT_CLAIMS
            action = data.draw(ACTIONS[data.draw(st.sampled_from(kinds))], label=f"action {step}")
            if action[0] == "wait":
                now += timedelta(seconds=action[1])
            now += timedelta(milliseconds=1)
            answers = [both.run(_act(side, action, now, policy)) for side in both.sides]
            assert answers[0] == answers[1], (step, action)
            seen.update(_reached(action, answers[0], both.sides[0], world.budgets))
            rows = [both.run(_rows(side)) for side in both.sides]
            for table in rows[0]:
                assert rows[0][table] == rows[1][table], (step, action, table)

    seen: Counter[str] = Counter()
    same()
    # The examples did reach the places where the paths differ.
    for place in PLACES:
        assert seen[place] > 0, (place, seen)


PLACES = (
    "claimed",
    "claimed_several",
    "claimed_on_budget",
    "over_budget",
    "complete_done",
    "completed_several",
    "completed_then_claimed",
    "storyboard_done",
    "assembly_done",
    "complete_already",
    "complete_fenced",
    "released",
    "failed",
    "approved",
    "cancelled",
    "swept",
)


def _reached(action: tuple[Any, ...], answer: Any, side: Side, budgeted: dict[str, Budget]) -> list[str]:
    kind = action[0]
    if kind == "claim":
        places = ["over_budget" for _, over in answer if over]
        taken = answer[-1][0]
        if taken:
            places.append("claimed_on_budget" if side.claims[-1].channel_id in budgeted else "claimed")
        if len(taken) > 1:
            places.append("claimed_several")
        return places
    if kind == "complete several":
        outcomes, taken = answer
        places = [f"complete_{outcome}" for outcome in outcomes]
        if sum(a == "done" for a in outcomes) > 1:
            places.append("completed_several")
        if taken and taken[0] and "done" in outcomes:
            places.append("completed_then_claimed")
        if taken and taken[1]:
            places.append("over_budget")
        return places
    if kind in ("complete", "complete again"):
        c = side.claims[side.last]
        special = [f"{c.kind}_done"] if answer == "done" and c.kind in ("storyboard", "assembly") else []
        return [f"complete_{answer}", *special]
    names = {"release": "released", "fail": "failed", "approve": "approved", "cancel": "cancelled"}
    if kind in names:
        return [names[kind]] * bool(any(answer) if isinstance(answer, list) else answer)
    return ["swept"] * bool(kind == "wait" and answer)
