"""Files retention removed, and a new pass that would need them: what would be bought again, and
the operator's say before it is.

The daemon never pays twice for the same clip. Retention removes a done video's intermediate files
but leaves their items succeeded, marked `removed_at`. A new pass keeps such an item as it is (no
file, nothing bought) while everything that consumes it is kept too: a video queued again unchanged
is done at once. Only when something downstream must be made again (a new cut: other captions, a
changed scene) are the removed items it needs made again, and those of a paid provider are bought
only with the operator's confirmation (`retry --rebuy`, or Status set again on the page once the
refusal put it back there):
`MediaRemoved` refuses the pass otherwise, naming what it would buy and about what it would cost.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from daemon.budget import usd
from daemon.errors import DaemonError
from services.plan import PlannedItem
from services.states import OPERATOR

# A confirmation on the page counts this long after the refusal that asked for it.
OFFER_VALID = timedelta(days=7)
ANY = 2**62  # `retry --rebuy`: whatever the pass needs
FREE_PROVIDERS = frozenset({"local", OPERATOR})
_NAMES = {
    "asset": ("image", "images"),
    "composite": ("frame", "frames"),
    "clip": ("video clip", "video clips"),
    "narration": ("narration", "narrations"),
    "sfx": ("ambience bed", "ambience beds"),
    "music": ("music track", "music tracks"),
    "assembly": ("final cut", "final cuts"),
}


class MediaRemoved(DaemonError):
    """A new pass would buy again files that retention removed; nothing was changed."""

    def __init__(self, removed_on: datetime, kinds: Mapping[str, int], micros: int) -> None:
        self.removed_on = removed_on
        self.kinds = dict(kinds)
        self.micros = micros
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        cost = f" (about {usd(self.micros)})" if self.micros else ""
        return (
            f"the intermediate files of this video were removed by retention on "
            f"{self.removed_on.date().isoformat()}, and this pass needs them again: it would buy again "
            f"{describe(self.kinds)}{cost}"
        )

    def offer(self, now: datetime, put_back: int) -> dict[str, Any]:
        """What task.rebuy_offer records of this refusal: a confirmation covers this much. `put_back`:
        the version of the page's Status write (its outbox row) that puts the Status back; only a
        Status set over that write, once it reached the page, confirms (see `offered`)."""
        return {"at": now.isoformat(), "micros": self.micros, "items": self.kinds, "put_back": put_back}


def describe(kinds: Mapping[str, int]) -> str:
    """'4 video clips, 2 images and 4 narrations', in pipeline order."""
    parts = []
    for kind, (one, many) in _NAMES.items():
        n = kinds.get(kind, 0)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    return parts[0] if parts else "nothing"


def offered(offer: Mapping[str, Any] | None, now: datetime, shown: int | None) -> int | None:
    """The amount (micro-dollars) a recorded offer lets a new pass buy again: while it is valid, and
    only for a Status the operator set over the refusal's put-back as the page showed it. `shown`:
    the version of the daemon's Status write the page showed when they set theirs (None: the page
    did not show one of ours, or it is not known). A put-back not yet on the page (Notion slow or
    down, a restart) confirms nothing: the Status there is still the one that was refused."""
    if not offer or shown is None:
        return None
    try:
        at = datetime.fromisoformat(str(offer["at"]))
        micros = int(offer["micros"])
        put_back = int(offer["put_back"])
    except (KeyError, TypeError, ValueError):
        return None
    return micros if now - at <= OFFER_VALID and shown >= put_back else None


def revived(planned: Sequence[PlannedItem], runs: Iterable[str], removed: Iterable[str]) -> set[str]:
    """The removed items the pass must make again: each one something that will run consumes, then
    what those consume in turn. `runs`: the keys that will run (new, reset, or not finished);
    `removed`: succeeded items with the same input whose file retention removed."""
    dependants: dict[str, list[str]] = defaultdict(list)
    for item in planned:
        for dep in item.deps:
            dependants[dep].append(item.key)
    running = set(runs)
    dormant = set(removed)
    revive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key in sorted(dormant - revive):
            if any(d in running for d in dependants[key]):
                revive.add(key)
                running.add(key)
                changed = True
    return revive


@dataclass(frozen=True)
class Rebuy:
    """The paid part of what a pass makes again because retention removed it."""

    kinds: Counter[str]
    micros: int
    removed_on: datetime | None

    def check(self, allowed_micros: int | None) -> None:
        """Refuses (MediaRemoved) unless the operator confirmed at least this much."""
        if not self.kinds or self.removed_on is None:
            return
        if allowed_micros is not None and self.micros <= allowed_micros:
            return
        raise MediaRemoved(self.removed_on, self.kinds, self.micros)


def paid_part(items: Iterable[tuple[PlannedItem, datetime | None, int]]) -> Rebuy:
    """From (planned item, when its file was removed, its estimate): the paid ones, counted."""
    kinds: Counter[str] = Counter()
    micros = 0
    removed_on: datetime | None = None
    for item, removed_at, estimate in items:
        if item.provider in FREE_PROVIDERS:
            continue
        kinds[item.kind] += 1
        micros += estimate
        if removed_at is not None and (removed_on is None or removed_at > removed_on):
            removed_on = removed_at
    return Rebuy(kinds, micros, removed_on)
