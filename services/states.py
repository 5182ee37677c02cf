"""The states a task, an item, an attempt, a queued comment and a file upload can be in: one
definition, used by the code and enforced by the database (CHECK constraints, migrations 0009 and
0012)."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    ACTIVE = "active"  # in production
    PAUSED = "paused"  # the operator paused it, or its page went to the trash
    BUDGET = "budget"  # waiting until its channel's budget allows the next step
    DONE = "done"
    ERROR = "error"  # stopped: an item failed, or the page cannot be produced as it is
    CANCELLED = "cancelled"


class ItemState(StrEnum):
    BLOCKED = "blocked"  # waits for its dependencies (or its review gate)
    READY = "ready"  # may be claimed once next_attempt_at has come
    RUNNING = "running"  # leased: a script runs it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PERMANENT = "permanent"  # exit 1 or 2: the item failed
    TRANSIENT = "transient"  # exit 75 or a crash: tried again later
    TIMEOUT = "timeout"  # ran past its kind's time limit
    LOST = "lost"  # its lease ended (expired and swept, the daemon restarted, the task stopped)
    RELEASED = "released"  # handed back on purpose (shutdown, pause)


class CommentState(StrEnum):
    PENDING = "pending"
    SENT = "sent"


class UploadState(StrEnum):
    """A file on its way to Notion (daemon/notion/uploads.py)."""

    CREATING = "creating"  # the create call may be out: an upload of this file's name may exist
    CREATED = "created"  # Notion gave the upload's id; its bytes may or may not be in
    UPLOADED = "uploaded"  # in Notion, to be attached before it expires
    ATTACHED = "attached"  # attached to the page: it no longer expires


# The provider of the items a person completes (the review gates): no slot, never claimed; the DAG
# step passes the ones that are off, and the operator's approval the others.
OPERATOR = "operator"


def check_sql(column: str, states: type[StrEnum]) -> str:
    """The CHECK constraint's condition: the column holds one of the states."""
    return f"{column} IN ({', '.join(repr(s.value) for s in states)})"
