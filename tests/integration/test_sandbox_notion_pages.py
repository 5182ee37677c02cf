"""The sandbox's Notion pages, blocks, databases, comments and users through notion-client."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from notion_client import Client
from notion_client.errors import APIResponseError

from tests.support.sandbox_proc import SandboxProcess

LOG = logging.getLogger("tests.notion")
COLORS = {"default", "gray", "brown", "orange", "yellow", "green", "blue", "purple", "pink", "red"}


def _creds(proc: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((proc.state_dir / "credentials.json").read_text()))


def _client(proc: SandboxProcess, http: httpx.Client, token_key: str) -> Client:
    token = _creds(proc)[token_key]
    return Client(client=http, auth=token, base_url=proc.base("notion"), retry=False, logger=LOG)


@pytest.fixture(scope="module")
def notion(sandbox: SandboxProcess) -> Iterator[Client]:
    with httpx.Client() as http:
        yield _client(sandbox, http, "notion_token")


@pytest.fixture(scope="module")
def operator(sandbox: SandboxProcess) -> Iterator[Client]:
    """The person in the workspace (the operator editing pages in Notion's UI)."""
    with httpx.Client() as http:
        yield _client(sandbox, http, "notion_operator_token")


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": value}}]


@pytest.fixture(scope="module")
def videos(notion: Client, sandbox: SandboxProcess) -> dict[str, Any]:
    """A database like a channel's, with a select Status."""
    return dict(
        notion.databases.create(
            parent={"type": "page_id", "page_id": _creds(sandbox)["notion_root_page_id"]},
            title=text("Videos"),
            initial_data_source={
                "properties": {
                    "Title": {"title": {}},
                    "Status": {
                        "select": {"options": [{"name": "Draft", "color": "gray"}, {"name": "Queued"}]}
                    },
                    "Stage": {"status": {}},
                    "Progress": {"rich_text": {}},
                    "Cost": {"number": {"format": "dollar"}},
                    "Output": {"url": {}},
                    "Updated": {"date": {}},
                    "Done": {"checkbox": {}},
                }
            },
        )
    )


def new_page(notion: Client, videos: dict[str, Any], title: str = "A heron") -> dict[str, Any]:
    ds = videos["data_sources"][0]["id"]
    return dict(
        notion.pages.create(parent={"data_source_id": ds}, properties={"Title": {"title": text(title)}})
    )


# Users -------------------------------------------------------------------------------------------
def test_users_me_is_the_bot_for_the_integration_and_a_person_for_the_operator(
    notion: Client, operator: Client, sandbox: SandboxProcess
) -> None:
    creds = _creds(sandbox)
    bot = notion.users.me()
    assert (bot["object"], bot["type"], bot["id"]) == ("user", "bot", creds["notion_bot_id"])
    assert bot["bot"]["owner"] == {"type": "workspace", "workspace": True}
    person = operator.users.me()
    assert (person["type"], person["id"]) == ("person", creds["notion_operator_id"])
    assert {u["id"] for u in notion.users.list()["results"]} == {bot["id"], person["id"]}


# Databases and data sources ----------------------------------------------------------------------
def test_database_is_created_with_its_first_data_source_and_options(
    notion: Client, videos: dict[str, Any]
) -> None:
    again = notion.databases.retrieve(videos["id"])
    assert again["data_sources"] == videos["data_sources"]
    assert again["data_sources"][0]["name"] == "Videos"
    ds = notion.data_sources.retrieve(videos["data_sources"][0]["id"])
    assert ds["parent"] == {"type": "database_id", "database_id": videos["id"]}
    props = ds["properties"]
    assert props["Title"]["type"] == "title" and props["Title"]["id"] == "title"
    options = props["Status"]["select"]["options"]
    assert [o["name"] for o in options] == ["Draft", "Queued"]
    assert options[0]["color"] == "gray" and options[1]["color"] in COLORS
    assert [o["name"] for o in props["Stage"]["status"]["options"]] == ["Not started", "In progress", "Done"]
    assert props["Cost"]["number"] == {"format": "dollar"}


def test_status_options_cannot_be_made_by_the_integration_but_can_by_the_operator(
    notion: Client, operator: Client, sandbox: SandboxProcess
) -> None:
    spec = {
        "properties": {
            "Name": {"title": {}},
            "Status": {"status": {"options": [{"name": "Queued"}, {"name": "Ready"}]}},
        }
    }
    parent = {"type": "page_id", "page_id": _creds(sandbox)["notion_root_page_id"]}
    with pytest.raises(APIResponseError) as err:
        notion.databases.create(parent=parent, title=text("S"), initial_data_source=spec)
    assert err.value.code == "validation_error" and "Status options" in str(err.value)
    made = operator.databases.create(parent=parent, title=text("S"), initial_data_source=spec)
    ds = notion.data_sources.retrieve(made["data_sources"][0]["id"])
    status = ds["properties"]["Status"]["status"]
    assert [o["name"] for o in status["options"]] == ["Queued", "Ready"]
    assert {g["name"] for g in status["groups"]} == {"To-do", "In progress", "Complete"}


def test_data_source_update_adds_renames_and_removes_properties(
    notion: Client, sandbox: SandboxProcess
) -> None:
    db = notion.databases.create(
        parent={"type": "page_id", "page_id": _creds(sandbox)["notion_root_page_id"]},
        title=text("Schema"),
        initial_data_source={"properties": {"Name": {"title": {}}, "Old": {"rich_text": {}}}},
    )
    ds_id = db["data_sources"][0]["id"]
    ds = notion.data_sources.update(
        ds_id, properties={"Old": {"name": "Notes"}, "Priority": {"select": {"options": [{"name": "High"}]}}}
    )
    assert set(ds["properties"]) == {"Name", "Notes", "Priority"}
    ds = notion.data_sources.update(ds_id, properties={"Priority": None})
    assert set(ds["properties"]) == {"Name", "Notes"}


def test_a_database_id_parent_works_for_a_single_source_database(
    notion: Client, videos: dict[str, Any]
) -> None:
    page = notion.pages.create(
        parent={"database_id": videos["id"]}, properties={"Title": {"title": text("x")}}
    )
    assert page["parent"] == {
        "type": "data_source_id",
        "data_source_id": videos["data_sources"][0]["id"],
        "database_id": videos["id"],
    }


# Pages -------------------------------------------------------------------------------------------
def test_page_properties_are_written_and_read_back(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    updated = notion.pages.update(
        page["id"],
        properties={
            "Status": {"select": {"name": "Queued"}},
            "Stage": {"status": {"name": "In progress"}},
            "Progress": {"rich_text": text("3/7 clips")},
            "Cost": {"number": 4.25},
            "Output": {"url": "file:///videos/heron.mp4"},
            "Updated": {"date": {"start": "2026-07-04T09:08:00.000Z"}},
            "Done": {"checkbox": True},
        },
    )
    props = notion.pages.retrieve(page["id"])["properties"]
    assert props == updated["properties"]
    assert props["Status"]["select"]["name"] == "Queued"
    assert props["Stage"]["status"]["name"] == "In progress"
    assert props["Progress"]["rich_text"][0]["plain_text"] == "3/7 clips"
    assert props["Cost"]["number"] == 4.25
    assert props["Output"]["url"] == "file:///videos/heron.mp4"
    assert props["Updated"]["date"]["start"] == "2026-07-04T09:08:00.000Z"
    assert props["Done"]["checkbox"] is True
    # A new page in a data source with a status property starts in its first "To-do" option.
    assert new_page(notion, videos)["properties"]["Stage"]["status"]["name"] == "Not started"


def test_a_new_select_value_becomes_an_option_with_a_colour(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    notion.pages.update(page["id"], properties={"Status": {"select": {"name": "Storyboard Review"}}})
    options = notion.data_sources.retrieve(videos["data_sources"][0]["id"])["properties"]["Status"]["select"][
        "options"
    ]
    made = [o for o in options if o["name"] == "Storyboard Review"]
    assert len(made) == 1 and made[0]["color"] in COLORS
    # Writing it again reuses the option.
    other = new_page(notion, videos)
    notion.pages.update(other["id"], properties={"Status": {"select": {"name": "Storyboard Review"}}})
    options = notion.data_sources.retrieve(videos["data_sources"][0]["id"])["properties"]["Status"]["select"][
        "options"
    ]
    assert [o["name"] for o in options].count("Storyboard Review") == 1


def test_an_unknown_status_option_is_refused_naming_it(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    with pytest.raises(APIResponseError) as err:
        notion.pages.update(page["id"], properties={"Stage": {"status": {"name": "Rendering"}}})
    assert err.value.status == 400 and err.value.code == "validation_error"
    assert '"Rendering"' in str(err.value) and "Stage" in str(err.value)
    assert notion.pages.retrieve(page["id"])["properties"]["Stage"]["status"]["name"] == "Not started"


def test_last_edited_by_is_the_bot_or_the_operator(
    notion: Client, operator: Client, videos: dict[str, Any], sandbox: SandboxProcess
) -> None:
    creds = _creds(sandbox)
    page = new_page(notion, videos)
    assert page["created_by"]["id"] == page["last_edited_by"]["id"] == creds["notion_bot_id"]
    by_operator = operator.pages.update(page["id"], properties={"Status": {"select": {"name": "Queued"}}})
    assert by_operator["last_edited_by"]["id"] == creds["notion_operator_id"]
    assert by_operator["created_by"]["id"] == creds["notion_bot_id"]
    by_bot = notion.pages.update(page["id"], properties={"Progress": {"rich_text": text("planning")}})
    assert by_bot["last_edited_by"]["id"] == creds["notion_bot_id"]


def test_a_trashed_page_can_be_read_but_not_edited_until_restored(
    notion: Client, videos: dict[str, Any]
) -> None:
    page = new_page(notion, videos)
    assert notion.pages.update(page["id"], in_trash=True)["in_trash"] is True
    read = notion.pages.retrieve(page["id"])
    assert read["in_trash"] is True and read["archived"] is True
    with pytest.raises(APIResponseError) as err:
        notion.pages.update(page["id"], properties={"Progress": {"rich_text": text("more")}})
    assert err.value.status == 400 and err.value.code == "validation_error"
    assert "Can't edit block that is archived" in str(err.value)
    assert notion.pages.update(page["id"], in_trash=False)["in_trash"] is False
    notion.pages.update(page["id"], properties={"Progress": {"rich_text": text("more")}})


def test_page_property_items(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos, "Kingfisher")
    title = notion.pages.properties.retrieve(page["id"], "title")
    assert title["object"] == "list" and title["results"][0]["title"]["plain_text"] == "Kingfisher"
    cost_id = page["properties"]["Cost"]["id"]
    assert notion.pages.properties.retrieve(page["id"], cost_id)["number"] is None


# Blocks ------------------------------------------------------------------------------------------
def test_page_body_with_storyboard_code_block_is_updated_in_place(
    notion: Client, videos: dict[str, Any]
) -> None:
    page = notion.pages.create(
        parent={"data_source_id": videos["data_sources"][0]["id"]},
        properties={"Title": {"title": text("Body")}},
        children=[
            {"object": "block", "type": "heading_2", "heading_2": {"rich_text": text("Storyboard")}},
            {"type": "code", "code": {"language": "yaml", "rich_text": text("title: v1")}},
        ],
    )
    blocks = notion.blocks.children.list(page["id"])["results"]
    assert [b["type"] for b in blocks] == ["heading_2", "code"]
    code = blocks[1]
    assert code["code"]["language"] == "yaml" and code["parent"] == {"type": "page_id", "page_id": page["id"]}
    updated = notion.blocks.update(code["id"], code={"rich_text": text("title: v2")})
    assert updated["code"]["rich_text"][0]["plain_text"] == "title: v2"
    assert updated["code"]["language"] == "yaml"
    assert notion.blocks.retrieve(code["id"])["code"]["rich_text"][0]["plain_text"] == "title: v2"
    deleted = notion.blocks.delete(code["id"])
    assert deleted["in_trash"] is True and deleted["archived"] is True
    assert [b["type"] for b in notion.blocks.children.list(page["id"])["results"]] == ["heading_2"]


def test_append_block_types_and_positions(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    first = notion.blocks.children.append(
        page["id"],
        children=[
            {"paragraph": {"rich_text": text("p")}},
            {"heading_1": {"rich_text": text("h1")}},
            {"heading_3": {"rich_text": text("h3")}},
            {"callout": {"rich_text": text("note"), "icon": {"type": "emoji", "emoji": "🎬"}}},
            {"bulleted_list_item": {"rich_text": text("item")}},
        ],
    )
    ids = [b["id"] for b in first["results"]]
    assert [b["type"] for b in first["results"]] == [
        "paragraph",
        "heading_1",
        "heading_3",
        "callout",
        "bulleted_list_item",
    ]
    notion.blocks.children.append(
        page["id"], children=[{"paragraph": {"rich_text": text("start")}}], position={"type": "start"}
    )
    notion.blocks.children.append(
        page["id"],
        children=[{"paragraph": {"rich_text": text("after p")}}],
        position={"type": "after_block", "after_block": {"id": ids[0]}},
    )
    listed = notion.blocks.children.list(page["id"])["results"]
    plain = [b[b["type"]]["rich_text"][0]["plain_text"] for b in listed]
    assert plain == ["start", "p", "after p", "h1", "h3", "note", "item"]


def test_children_are_paginated_by_block_id(notion: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    for batch in range(2):
        notion.blocks.children.append(
            page["id"], children=[{"paragraph": {"rich_text": text(f"{batch}-{i}")}} for i in range(75)]
        )
    first = notion.blocks.children.list(page["id"])
    assert len(first["results"]) == 100 and first["has_more"] is True
    second = notion.blocks.children.list(page["id"], start_cursor=first["next_cursor"], page_size=100)
    assert len(second["results"]) == 50 and second["has_more"] is False
    assert first["next_cursor"] == second["results"][0]["id"]


def test_editing_the_body_moves_the_pages_last_edited_by(
    notion: Client, operator: Client, videos: dict[str, Any], sandbox: SandboxProcess
) -> None:
    page = new_page(notion, videos)
    operator.blocks.children.append(
        page["id"], children=[{"paragraph": {"rich_text": text("operator note")}}]
    )
    assert notion.pages.retrieve(page["id"])["last_edited_by"]["id"] == _creds(sandbox)["notion_operator_id"]


# Comments ----------------------------------------------------------------------------------------
def test_comments_are_created_and_listed(notion: Client, operator: Client, videos: dict[str, Any]) -> None:
    page = new_page(notion, videos)
    made = notion.comments.create(
        parent={"page_id": page["id"]}, rich_text=text("Storyboard ready for review")
    )
    assert made["display_name"]["type"] == "integration"
    operator.comments.create(discussion_id=made["discussion_id"], rich_text=text("Looks good"))
    listed = notion.comments.list(block_id=page["id"])["results"]
    assert [c["rich_text"][0]["plain_text"] for c in listed] == ["Storyboard ready for review", "Looks good"]
    assert {c["discussion_id"] for c in listed} == {made["discussion_id"]}


def test_search_finds_data_sources_by_title(notion: Client, videos: dict[str, Any]) -> None:
    found = notion.search(query="Videos", filter={"property": "object", "value": "data_source"})["results"]
    assert videos["data_sources"][0]["id"] in {r["id"] for r in found}
    assert all(r["object"] == "data_source" for r in found)
