"""The worker's completions, committed together when scripts end together.

Each finished item waits for its completion's outcome; one flush at a time commits every
completion waiting (up to BATCH) in one transaction (complete.complete_many), so the slots of a
provider that answers at once cost one BEGIN and one COMMIT, not one each. Nothing waits to fill a
batch: a completion alone is committed at once, and those that arrive while a flush runs go
together in the next. A batch that fails for another reason than the database being away is
committed again item by item, so that one item's fault is only its own.

The places a batch frees are claimed again in its transaction where it can be (`claim_after`
says what to claim, `on_claimed` gets what was taken, on both databases): the worker's next items
start without a claim of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.claim import ClaimRequest, ClaimResult
from daemon.complete import (
    Completion,
    Outcome,
    StoryboardHook,
    complete,
    complete_and_claim,
    complete_many,
    expands_plan,
)
from daemon.retry import db_retry

BATCH = 16
# What to claim once a batch commits (None: nothing), and what to do with the items it took (None:
# the claim did not run; the request's places are given back).
ClaimAfter = Callable[[Sequence[Completion]], ClaimRequest | None]
OnClaimed = Callable[[ClaimRequest, ClaimResult | None], Awaitable[None]]


class CompletionQueue:
    def __init__(
        self,
        engine: AsyncEngine,
        workspace: Path,
        *,
        on_storyboard: StoryboardHook | None = None,
        auto_approve: bool = False,
        claim_after: ClaimAfter | None = None,
        on_claimed: OnClaimed | None = None,
    ) -> None:
        self.engine = engine
        self.claim_after = claim_after
        self.on_claimed = on_claimed
        self.workspace = workspace
        self.on_storyboard = on_storyboard
        self.auto_approve = auto_approve
        self.waiting: list[tuple[Completion, asyncio.Future[Outcome]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.batches = 0  # batches committed (or tried), as many as completions when none coincide

    async def commit(self, done: Completion) -> Outcome:
        """The item's outcome once its completion is committed (db_retry: through an outage too).
        A storyboard that expands the plan is committed alone, at once."""
        c = done.claimed
        if expands_plan(c, self.on_storyboard):
            return await db_retry(complete)(
                self.engine,
                c,
                done.result,
                workspace=self.workspace,
                now=done.now,
                final_path=done.final_path,
                on_storyboard=self.on_storyboard,
                auto_approve=self.auto_approve,
                budget_day=done.budget_day,
            )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append((done, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush(), name="completions")
        return await future

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:BATCH], self.waiting[BATCH:]
            self.batches += 1
            dones = [done for done, _ in batch]
            then = self.claim_after(dones) if self.claim_after is not None else None
            try:
                outcomes, taken = await db_retry(complete_and_claim)(
                    self.engine, dones, then, workspace=self.workspace, auto_approve=self.auto_approve
                )
            except Exception as exc:
                await self._claimed(then, None)
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                for done, future in batch:  # each alone: one item's fault fails only that item
                    try:
                        outcome = (await self._commit([done]))[0]
                    except Exception as alone:
                        _settle(future, alone)
                    else:
                        _settle(future, outcome)
                continue
            await self._claimed(then, taken)  # the new items start before the old ones leave
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                _settle(future, outcome)

    async def _claimed(self, then: ClaimRequest | None, taken: ClaimResult | None) -> None:
        if then is not None and self.on_claimed is not None:
            await self.on_claimed(then, taken)

    async def _commit(self, batch: list[Completion]) -> list[Outcome]:
        return await db_retry(complete_many)(
            self.engine, batch, workspace=self.workspace, auto_approve=self.auto_approve
        )


def _settle(future: asyncio.Future[Outcome], answer: Outcome | BaseException) -> None:
    if future.done():  # its item's task was cancelled meanwhile (the completion stands)
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
