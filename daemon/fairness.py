"""Weighted fair sharing of a provider's slots across channels (stride scheduling in the claim).

Each (provider, channel) has a turn value (stride scheduling's "pass"; here "pass" is a task's new
run). The claim takes the ready item of the channel whose turn is lowest, then moves that channel's
turn on by 1/weight: over many claims, channels get slots in proportion to their weights. A channel
that was idle (or is new) is lifted to the lowest turn among
channels with ready work, so it neither starves nor bursts ahead on credit from its idle time.
"""

from __future__ import annotations

from collections.abc import Mapping


def stride(weights: Mapping[str, int], channel: str) -> float:
    """How far a channel's turn moves per claim: 1/weight (weight 1 when unset)."""
    return 1.0 / max(1, weights.get(channel, 1))
