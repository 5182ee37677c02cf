"""The leader lease: singleton jobs (Notion intake, the outbox) run in one daemon at a time.

A row per job group with owner, token and expiry. The holder renews it; anyone takes it over once
it has expired, so a dead leader is replaced within one TTL.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.models import Leader


async def acquire(engine: AsyncEngine, name: str, owner: str, now: datetime, ttl: float) -> str | None:
    """Takes or renews the lease; returns the token when this owner holds it, else None."""
    expires = now + timedelta(seconds=ttl)
    token = uuid.uuid4().hex
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    upsert = insert(Leader).values(name=name, owner=owner, token=token, expires_at=expires)
    statement = upsert.on_conflict_do_update(
        index_elements=[Leader.name],
        set_={
            "owner": owner,
            "expires_at": expires,
            # A renewal keeps its token; a takeover gets a new one.
            "token": _keep_token_if_owner(owner, token),
        },
        where=(Leader.owner == owner) | (Leader.expires_at < now) | Leader.owner.is_(None),
    ).returning(Leader.token)
    async with engine.begin() as conn:
        held = await conn.scalar(statement)
    return None if held is None else str(held)


def _keep_token_if_owner(owner: str, token: str) -> ColumnElement[str]:
    return case((Leader.owner == owner, Leader.token), else_=literal(token))


async def release(engine: AsyncEngine, name: str, token: str) -> None:
    """Gives the lease up at shutdown so another daemon takes over at once."""
    async with engine.begin() as conn:
        await conn.execute(
            update(Leader)
            .where(Leader.name == name, Leader.token == token)
            .values(owner=None, expires_at=None)
        )


async def holder(engine: AsyncEngine, name: str) -> tuple[str | None, datetime | None]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(Leader.owner, Leader.expires_at).where(Leader.name == name))).first()
    return (row.owner, row.expires_at) if row else (None, None)
