"""Users: the integration's bot (`users/me` with the integration token) and the operator person."""

from __future__ import annotations

from typing import Any

from sandbox.notion.errors import not_found
from sandbox.notion.state import Call, Handler, Notion


def me(n: Notion, call: Call) -> dict[str, Any]:
    user = n.user(call.actor)
    assert user is not None  # the gate only lets known tokens through
    return user


def list_users(n: Notion, call: Call) -> dict[str, Any]:
    people = [n.user(n.operator_id), n.user(n.bot_id)]
    return {
        "object": "list",
        "results": [u for u in people if u is not None],
        "next_cursor": None,
        "has_more": False,
        "type": "user",
        "user": {},
    }


def retrieve(n: Notion, call: Call) -> dict[str, Any]:
    user_id = call.id("user_id")
    user = n.user(user_id)
    if user is None:
        raise not_found("user", user_id)
    return user


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/v1/users/me", "users.me", me),
    ("GET", "/v1/users", "users.list", list_users),
    ("GET", "/v1/users/{user_id}", "users.retrieve", retrieve),
]
