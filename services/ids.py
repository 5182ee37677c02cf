"""Distinct types for the identifiers that travel between the daemon, the DB and the workspace."""

from __future__ import annotations

from typing import NewType

ChannelId = NewType("ChannelId", str)
"""A channel's id from config/channels/<id>.yaml: ^[a-z0-9_-]+$."""

ProjectSlug = NewType("ProjectSlug", str)
"""A project's workspace folder name, derived from its Notion page id: ^[a-zA-Z0-9_-]+$."""

ItemKey = NewType("ItemKey", str)
"""An item's key within its task, e.g. clip_s07: ^[a-z0-9_]+$."""

AssetKey = NewType("AssetKey", str)
"""A storyboard asset's key: ^[a-z0-9_]+$."""

SceneKey = NewType("SceneKey", str)
"""A storyboard scene's key: ^[a-z0-9_]+$."""
