"""Each channel's YouTube sign-in: the refresh token, encrypted with TOKEN_KEY (Fernet) before it
reaches the database; it is decrypted only to hand it to one upload script's environment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.models import YouTubeAccount
from daemon.errors import ConfigError

KEY_FIX = "set TOKEN_KEY (make one with `nvd youtube-key` and keep it with the other secrets)"


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def cipher(key: str | None) -> Fernet:
    if not key:
        raise ConfigError(f"TOKEN_KEY is not set: {KEY_FIX}")
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigError(f"TOKEN_KEY is not a Fernet key (32 url-safe base64 bytes): {KEY_FIX}") from exc


@dataclass(frozen=True)
class Account:
    channel_id: str
    project: str
    refresh_token: str
    youtube_channel: str | None
    revoked_reason: str | None  # set: Google refused the token; sign in again


async def save(
    engine: AsyncEngine,
    key: str | None,
    channel_id: str,
    project: str,
    refresh_token: str,
    youtube_channel: str | None,
    now: datetime,
) -> None:
    """Stores (or replaces) the channel's sign-in; a new one clears an earlier refusal."""
    sealed = cipher(key).encrypt(refresh_token.encode())
    async with engine.begin() as conn:
        await conn.execute(delete(YouTubeAccount).where(YouTubeAccount.channel_id == channel_id))
        await conn.execute(
            insert(YouTubeAccount).values(
                channel_id=channel_id,
                project=project,
                refresh_token=sealed,
                youtube_channel=youtube_channel,
                created_at=now,
            )
        )


async def load(engine: AsyncEngine, key: str | None, channel_id: str) -> Account | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(YouTubeAccount).where(YouTubeAccount.channel_id == channel_id))
        ).first()
    if row is None:
        return None
    try:
        token = cipher(key).decrypt(bytes(row.refresh_token)).decode()
    except InvalidToken as exc:
        raise ConfigError(
            f"the YouTube sign-in of channel {channel_id} cannot be decrypted with this TOKEN_KEY (was the "
            f"key changed?): set the key it was saved with, or sign in again with "
            f"`nvd youtube-auth --channel {channel_id}`"
        ) from exc
    return Account(row.channel_id, row.project, token, row.youtube_channel, row.revoked_reason)


async def mark_refused(engine: AsyncEngine, channel_id: str, reason: str, now: datetime) -> bool:
    """Google refused the channel's token: its uploads wait for a new sign-in. True when newly so."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(YouTubeAccount)
            .where(YouTubeAccount.channel_id == channel_id, YouTubeAccount.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return done.rowcount == 1
