"""The daemon's Notion side against the sandbox, driven step by step: poll, sync, flush, work."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert, select, update

from daemon.app import App
from daemon.claim import ensure_slots
from daemon.db.models import Comment, Item, Outbox, PageSeen, PageUnread, Task
from daemon.notion.gateway import NotionApi
from daemon.notion.intake import inputs_hash
from daemon.notion.props import option_name, plain_text, text_value
from daemon.notion.sync import sync_tasks
from daemon.settings import Settings
from tests.support import fake_scripts
from tests.support.engine_kit import now, run_workers
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials


def seed(sandbox: SandboxProcess, channel: str, projects: int = 1, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "seed",
            "--state",
            str(sandbox.state_dir),
            "--channel",
            channel,
            "--projects",
            str(projects),
            "--url",
            sandbox.url,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class NotionKit:
    sandbox: SandboxProcess
    db_url: str
    tmp: Path
    channel: str = field(default_factory=lambda: f"ch{uuid.uuid4().hex[:8]}")
    seeded: dict[str, Any] = field(default_factory=dict)
    more: dict[str, dict[str, Any]] = field(default_factory=dict)
    app: App | None = None
    operator: NotionApi | None = None
    scripts: Path | None = None

    async def start(
        self,
        projects: int = 1,
        gates: dict[str, bool] | None = None,
        channel: dict[str, Any] | None = None,
        more: dict[str, list[str]] | None = None,
        **settings: Any,
    ) -> NotionKit:
        """Seeds a channel; `channel` overrides fields of its config (e.g. {"scenes": 1}). `more`
        seeds further channels, each in a data source of its own, with the seed's extra arguments
        (e.g. {"kanban": ["--status-type", "status"]}); their seeds are in `self.more`."""
        self.seeded = seed(self.sandbox, self.channel, projects)
        channels = self.tmp / "channels"
        channels.mkdir(exist_ok=True)
        seeds = [(self.channel, self.seeded)]
        for name, args in (more or {}).items():
            self.more[name] = seed(self.sandbox, name, projects, *args)
            seeds.append((name, self.more[name]))
        for name, seeded in seeds:
            config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
            config["gates"] = gates or {"storyboard": False, "assets": False, "final": False}
            config.update(channel or {})
            (channels / f"{name}.yaml").write_text(yaml.safe_dump(config))
        self.scripts = fake_scripts.install(self.tmp / "scripts")
        creds = credentials(self.sandbox)
        values: dict[str, Any] = {
            "database_url": self.db_url,
            "workspace_dir": self.tmp / "ws",
            "channels_dir": channels,
            "scripts_dir": self.scripts,
            "notion_token": creds["notion_token"],
            "notion_base_url": self.sandbox.base("notion"),
            "notion_rate": 200.0,
            "notion_burst": 50,
            "lease_ttl_s": 3.0,
            "claim_poll_s": 0.1,
            "retry_base_s": 0.05,
            "retry_cap_s": 0.2,
            "daemon_id": "notion-kit",
            **settings,
        }
        self.app = await App.build(Settings(**values))
        await ensure_slots(self.app.engine, self.app.limits)
        self.operator = NotionApi(
            creds["notion_operator_token"], self.sandbox.base("notion"), rate=200, burst=50
        )
        return self

    async def close(self) -> None:
        if self.operator:
            await self.operator.close()
        if self.app:
            await self.app.close()

    @property
    def pages(self) -> list[str]:
        return list(self.seeded["page_ids"])

    # Driving ---------------------------------------------------------------------------------------
    async def poll(self) -> int:
        assert self.app
        jobs = self.app.notion_jobs()
        assert jobs is not None
        return await jobs.intake.poll(now())

    async def flush(self) -> int:
        """Sync the tasks into the outbox, then write it to Notion; returns the writes made."""
        assert self.app
        jobs = self.app.notion_jobs()
        assert jobs is not None
        t = now()
        await sync_tasks(self.app.engine, self.app.settings.workspace_dir, t, None)
        await jobs.writer.send_board_files(t)
        return await jobs.writer.flush(t)

    async def work(self, until: Any, timeout: float = 60) -> None:
        assert self.app
        await run_workers([self.app.worker()], until, timeout)

    # Operator ----------------------------------------------------------------------------------------
    async def set(self, page_id: str, **props: Any) -> None:
        """Edits the page as the operator (a person): Status="Queued", Topic="...", ..."""
        assert self.operator
        body: dict[str, Any] = {}
        for name, value in props.items():
            key = name.replace("_", " ")
            if key in ("Status", "Channel", "Priority"):
                body[key] = {"select": {"name": value} if value else None}
            elif key == "Title":
                body[key] = {"title": text_value(value)["rich_text"]}
            else:
                body[key] = text_value(value)
        await self.operator.call("PATCH", f"pages/{page_id}", body={"properties": body})

    async def page(self, page_id: str) -> dict[str, Any]:
        assert self.operator
        page = await self.operator.call("GET", f"pages/{page_id}")
        props = page["properties"]
        out: dict[str, Any] = {}
        for name, prop in props.items():
            kind = prop.get("type")
            if kind in ("select", "status"):
                out[name] = option_name(prop)
            elif kind in ("title", "rich_text"):
                out[name] = plain_text(prop)
            else:
                out[name] = prop.get(kind)
        return out

    async def comments(self, page_id: str) -> list[str]:
        assert self.operator
        listing = await self.operator.call("GET", "comments", query={"block_id": page_id, "page_size": 100})
        return ["".join(p.get("plain_text", "") for p in c.get("rich_text", [])) for c in listing["results"]]

    async def blocks(self, page_id: str) -> list[dict[str, Any]]:
        assert self.operator
        listing = await self.operator.call("GET", f"blocks/{page_id}/children", query={"page_size": 100})
        return list(listing["results"])

    async def db_time_travel_comments(self) -> None:
        """Makes deferred comments due now (their backoff is real time otherwise)."""
        assert self.app
        async with self.app.engine.begin() as conn:
            await conn.execute(update(Comment).values(next_attempt_at=now(), recheck_at=None))
            await conn.execute(update(Outbox).values(next_attempt_at=now()))

    # DB ----------------------------------------------------------------------------------------------
    async def task(self, page_id: str) -> Any:
        assert self.app
        async with self.app.engine.connect() as conn:
            return (await conn.execute(select(Task).where(Task.notion_page_id == page_id))).first()

    async def unread(self) -> list[str]:
        """The pages intake keeps to read again."""
        assert self.app
        async with self.app.engine.connect() as conn:
            return [r[0] for r in await conn.execute(select(PageUnread.page_id))]

    async def seen_as_is(self, page_id: str) -> None:
        """Records the page as intake would after handling it (as if a crash had lost the act)."""
        assert self.app and self.operator
        page = await self.operator.call("GET", f"pages/{page_id}")
        async with self.app.engine.begin() as conn:
            await conn.execute(
                insert(PageSeen).values(
                    page_id=page_id,
                    data_source_id=self.seeded["data_source_id"],
                    status=option_name(page["properties"]["Status"]),
                    props_hash=inputs_hash(page["properties"]),
                    seen_at=now(),
                )
            )

    async def tasks(self) -> list[Any]:
        assert self.app
        async with self.app.engine.connect() as conn:
            return list((await conn.execute(select(Task))).all())

    async def items(self, task_id: int) -> dict[str, Any]:
        assert self.app
        async with self.app.engine.connect() as conn:
            return {r.key: r for r in await conn.execute(select(Item).where(Item.task_id == task_id))}
