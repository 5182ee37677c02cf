"""Weighted fair sharing of a provider's slots across channels (stride scheduling in the claim).

Each (provider, channel) has a pass value. The claim takes the ready item of the channel with the
lowest pass, then advances that channel's pass by 1/weight: over many claims, channels get slots in
proportion to their weights. A channel that was idle (or is new) is lifted to the lowest pass among
channels with ready work, so it neither starves nor bursts ahead on credit from its idle time.
"""

from __future__ import annotations

from collections.abc import Mapping


def stride(weights: Mapping[str, int], channel: str) -> float:
    """How far a channel's pass moves per claim: 1/weight (weight 1 when unset)."""
    return 1.0 / max(1, weights.get(channel, 1))
