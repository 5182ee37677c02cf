"""Files to Notion (Direct Upload), each content sent once.

A file is known by its SHA-256: its row (`notion_upload`) keeps Notion's upload id and where the
upload stands. The row is written before each call whose answer could be lost, so a retry after a
crash or an unanswered call looks before sending: an upload whose create went out is found by its
name (which carries the hash) among the pending uploads; one whose bytes went out is asked for its
status. A file over the workspace's cap (`users/me` -> bot.workspace_limits) is replaced by a
smaller preview (daemon/notion/preview.py). Single part up to 20 MB, parts of 10 MB above.
Nothing here holds a database transaction across a Notion call.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.crashpoints import crash_point
from daemon.db.models import NotionUpload
from daemon.logs import get_logger
from daemon.notion.gateway import AmbiguousWrite, NotionGateway, NotionNotFound, NotionRejected
from daemon.notion.preview import NoPreviewYet, Preview, PreviewFailed, make_preview
from services.states import UploadState

MiB = 1024 * 1024
SINGLE_PART_MAX = 20 * MiB
PART_SIZE = 10 * MiB
DEFAULT_CAP = 5 * MiB  # a workspace that does not say: the free plan's cap
CAP_TTL = timedelta(hours=1)  # a plan can change: the cap is asked again after this
RENEW_BEFORE = timedelta(minutes=10)  # an unattached upload this close to expiry is made again
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
}


class NotSentYet(Exception):
    """The file is not in Notion yet: the upload phase, outside the outbox's lock, sends it."""


class UploadRefused(Exception):
    """The file cannot go to Notion as it is (a type Notion does not take, a preview that failed)."""


@dataclass(frozen=True)
class Sent:
    upload_id: str
    filename: str  # the name Notion shows, with the content's hash in it
    preview: Preview | None  # set when a smaller preview stands in for the file


class Uploads:
    def __init__(self, engine: AsyncEngine, notion: NotionGateway, workspace: Path) -> None:
        self.engine = engine
        self.notion = notion
        self.workspace = workspace
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._cap: tuple[int, datetime] | None = None
        # Files that cannot go as they are, by (path, size, mtime): why, for the board to say.
        self._refused: dict[tuple[str, int, int], str] = {}
        self._one_at_a_time = asyncio.Lock()
        self.log = get_logger(job="uploads")

    async def cap(self, now: datetime) -> int:
        if self._cap is None or now - self._cap[1] > CAP_TTL:
            me = await self._call("GET", "users/me")
            limits = (me.get("bot") or {}).get("workspace_limits") or {}
            self._cap = (int(limits.get("max_file_upload_size_in_bytes") or DEFAULT_CAP), now)
        return self._cap[0]

    async def send(self, relative: str, now: datetime) -> Sent:
        """The file (workspace-relative) in Notion, ready to attach; sent only if it is not already."""
        return await self._send(relative, now, calls=True)

    async def sent(self, relative: str, now: datetime) -> Sent:
        """The file as already sent, without a Notion call or a preview made; NotSentYet if it is not
        (then `send` it first, outside any lock that other Notion work waits for)."""
        return await self._send(relative, now, calls=False)

    async def _send(self, relative: str, now: datetime, *, calls: bool) -> Sent:
        stat = (self.workspace / relative).stat()
        key = (relative, stat.st_size, stat.st_mtime_ns)
        if key in self._refused:
            raise UploadRefused(self._refused[key])
        try:
            return await self._send_file(relative, now, calls=calls)
        except (UploadRefused, PreviewFailed, NotionRejected) as exc:
            self._refused[key] = str(exc)
            raise UploadRefused(str(exc)) from exc

    async def _send_file(self, relative: str, now: datetime, *, calls: bool) -> Sent:
        source = self.workspace / relative
        if source.suffix.lower() not in CONTENT_TYPES:
            raise UploadRefused(
                f"{source.name}: Notion does not take {source.suffix or 'files without an extension'}"
            )
        if calls:
            cap = await self.cap(now)
        elif self._cap is None:
            raise NotSentYet(relative)
        else:
            cap = self._cap[0]
        preview: Preview | None = None
        if source.stat().st_size > cap:
            try:
                preview = await make_preview(source, cap, self.workspace, make=calls)
            except NoPreviewYet as exc:
                raise NotSentYet(relative) from exc
            source = preview.path
        sha = await self._sha(source)
        name = f"{source.stem}-{sha[:12]}{source.suffix.lower()}"
        row = await self._row(sha)
        if row is not None and _ready(row, now):
            return Sent(str(row.upload_id), name, preview)
        if not calls:
            raise NotSentYet(relative)
        async with self._one_at_a_time:  # two senders of one file would make two uploads of it
            upload_id = await self._ensure(source, sha, name, now)
        return Sent(upload_id, name, preview)

    async def attached(self, upload_ids: list[str], now: datetime) -> None:
        """Uploads now attached to a page: they no longer expire."""
        if not upload_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(NotionUpload)
                .where(NotionUpload.upload_id.in_(upload_ids))
                .values(state=UploadState.ATTACHED, expires_at=None, updated_at=now)
            )

    async def _call(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        """Uploads use the Notion budget the polls and Status writes leave (the gateway's spare
        tokens): a board's files never keep an operator's change waiting."""
        return await self.notion.call(method, path, spare=True, **request)

    # One file ---------------------------------------------------------------------------------------
    async def _ensure(self, source: Path, sha: str, name: str, now: datetime) -> str:
        row = await self._row(sha) or await self._insert(source, sha, name, now)
        if row.state == UploadState.ATTACHED and row.upload_id:
            return str(row.upload_id)
        upload_id: str | None = row.upload_id
        if upload_id is not None:
            found = await self._retrieve(upload_id)
            status = (found or {}).get("status")
            if status == "uploaded" and _expiry(found) > now + RENEW_BEFORE:
                await self._set(sha, state=UploadState.UPLOADED, expires_at=_expiry(found), updated_at=now)
                return str(upload_id)
            if status != "pending":  # expired, failed, or gone: a new upload
                upload_id = None
        if upload_id is None:
            upload_id = await self._create(row, source, name, now)
        answer = await self._send_bytes(upload_id, source, name, str(row.content_type))
        await self._set(sha, state=UploadState.UPLOADED, expires_at=_expiry(answer), updated_at=now)
        self.log.info("notion_file_uploaded", file=name, bytes=source.stat().st_size)
        return upload_id

    async def _create(self, row: Any, source: Path, name: str, now: datetime) -> str:
        if row.state == UploadState.CREATING and row.attempts > 0:
            earlier = await self._pending_named(name)  # a create that went out unanswered, or a crash
            if earlier is not None:
                await self._set(row.sha256, state=UploadState.CREATED, upload_id=earlier, updated_at=now)
                return earlier
        await self._set(
            row.sha256,
            state=UploadState.CREATING,
            upload_id=None,
            attempts=NotionUpload.attempts + 1,
            updated_at=now,
        )
        size = source.stat().st_size
        body: dict[str, Any] = {"filename": name, "content_type": row.content_type}
        if size > SINGLE_PART_MAX:
            body.update(mode="multi_part", number_of_parts=math.ceil(size / PART_SIZE))
        else:
            body["mode"] = "single_part"
        made = await self._call("POST", "file_uploads", body=body, idempotent=False)
        crash_point("upload_after_create")
        upload_id = str(made["id"])
        await self._set(row.sha256, state=UploadState.CREATED, upload_id=upload_id, updated_at=now)
        return upload_id

    async def _send_bytes(self, upload_id: str, source: Path, name: str, content_type: str) -> dict[str, Any]:
        """Sends the bytes; an answer lost on the way is settled by asking the upload's status."""
        size = source.stat().st_size
        try:
            if size <= SINGLE_PART_MAX:
                data = await asyncio.to_thread(source.read_bytes)
                answer = await self._call(
                    "POST",
                    f"file_uploads/{upload_id}/send",
                    form={"file": (name, data, content_type)},
                    idempotent=False,
                )
                crash_point("upload_after_send")
                return answer
            parts = math.ceil(size / PART_SIZE)
            for number in range(1, parts + 1):
                chunk = await asyncio.to_thread(_read_part, source, number)
                await self._call(
                    "POST",
                    f"file_uploads/{upload_id}/send",
                    form={"file": (name, chunk, content_type), "part_number": str(number)},
                    idempotent=False,
                )
            return await self._call("POST", f"file_uploads/{upload_id}/complete", idempotent=False)
        except (AmbiguousWrite, NotionRejected):
            # A send whose answer was lost, or refused because an earlier one landed late.
            found = await self._retrieve(upload_id)
            if (found or {}).get("status") == "uploaded":
                return dict(found or {})
            raise

    async def _retrieve(self, upload_id: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", f"file_uploads/{upload_id}")
        except NotionNotFound:
            return None

    async def _pending_named(self, name: str) -> str | None:
        cursor: str | None = None
        while True:
            query: dict[str, Any] = {"status": "pending", "page_size": 100}
            if cursor:
                query["start_cursor"] = cursor
            listing = await self._call("GET", "file_uploads", query=query)
            for upload in listing.get("results", []):
                if upload.get("filename") == name:
                    return str(upload["id"])
            cursor = listing.get("next_cursor")
            if not listing.get("has_more") or not cursor:
                return None

    # Rows ---------------------------------------------------------------------------------------------
    async def _row(self, sha: str) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(NotionUpload).where(NotionUpload.sha256 == sha))).first()

    async def _insert(self, source: Path, sha: str, name: str, now: datetime) -> Any:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(NotionUpload).values(
                        sha256=sha,
                        size=source.stat().st_size,
                        filename=name,
                        content_type=CONTENT_TYPES[source.suffix.lower()],
                        state=UploadState.CREATING,
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass  # the same content, inserted meanwhile
        return await self._row(sha)

    async def _set(self, sha: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(NotionUpload).where(NotionUpload.sha256 == sha).values(**values))

    async def _sha(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = await asyncio.to_thread(_file_sha, path)
        return self._hashes[key]


def _ready(row: Any, now: datetime) -> bool:
    """In Notion and attachable for a while yet (an attached upload does not expire)."""
    if row.upload_id is None:
        return False
    if row.state == UploadState.ATTACHED:
        return True
    return bool(row.state == UploadState.UPLOADED and row.expires_at and row.expires_at > now + RENEW_BEFORE)


def _expiry(upload: dict[str, Any] | None) -> datetime:
    """When the upload expires unless attached; an attached one has no expiry."""
    raw = (upload or {}).get("expiry_time")
    if not raw:
        return NEVER
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_part(path: Path, number: int) -> bytes:
    with path.open("rb") as f:
        f.seek((number - 1) * PART_SIZE)
        return f.read(PART_SIZE)
