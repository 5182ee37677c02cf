"""Publishing to YouTube: the upload in the plan, the page's choices, the quota day."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.channels import YouTubeQuota
from daemon.notion.publish import publish_choices
from daemon.youtube.quota import as_charged, needs, next_reset, quota_day
from services.plan import PlanOptions, UploadOptions, build_plan
from services.status import ItemView, Status, shown_status
from services.storyboard import parse_storyboard, parse_storyboard_yaml, storyboard_to_yaml
from tests.unit.test_storyboard import board

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _plan(
    request: dict[str, object], youtube: UploadOptions | None, **board_fields: object
) -> dict[str, object]:
    sb = parse_storyboard(board(scenes=2) | board_fields)
    return {p.key: p for p in build_plan(request, sb, PlanOptions(youtube=youtube))}


def test_only_a_channel_that_publishes_plans_an_upload_after_the_final_review() -> None:
    assert "upload" not in _plan({"title": "t"}, None)
    plan = _plan({"title": "The Heron"}, UploadOptions(privacy="unlisted", tags=("nature",)))
    upload = plan["upload"]
    assert upload.provider == "youtube" and set(upload.deps) == {"assembly", "final_gate"}
    # The title the video's title card and thumbnail show: the storyboard's.
    assert upload.input["title"] == "The Heron's Patience" and upload.input["privacy"] == "unlisted"
    assert upload.input["tags"] == ["nature"]
    # A new cut is a new upload: the assembly's hash is in the upload's.
    again = _plan({"title": "The Heron"}, UploadOptions(privacy="unlisted", tags=("nature",)))
    assert again["upload"].input_hash == upload.input_hash


def test_the_pages_choices_go_over_the_channels_and_a_publish_time_makes_it_private() -> None:
    request = {
        "title": "t",
        "publish": {
            "visibility": "public",
            "publish_at": "2026-12-24T17:00:00Z",
            "tags": ["herons"],
            "description": "Dawn <on> the delta",
        },
    }
    upload = _plan(request, UploadOptions(tags=("nature", "herons")))["upload"].input
    assert upload["privacy"] == "private" and upload["publish_at"] == "2026-12-24T17:00:00Z"
    assert upload["tags"] == ["herons", "nature"]
    assert upload["description"] == "Dawn ‹on› the delta"  # YouTube refuses < and >


def test_the_storyboards_description_is_the_default_and_survives_the_yaml_round_trip() -> None:
    upload = _plan({"title": "t"}, UploadOptions(), description="Herons at dawn.")["upload"].input
    assert upload["description"] == "Herons at dawn."
    sb = parse_storyboard(board(scenes=2) | {"description": "Herons at dawn."})
    assert parse_storyboard_yaml(storyboard_to_yaml(sb)) == sb


def test_a_pages_choices_are_read_and_each_problem_names_the_field_and_the_fix() -> None:
    props = {
        "Visibility": {"type": "select", "select": {"name": "Unlisted"}},
        "Tags": {"type": "multi_select", "multi_select": [{"name": "birds"}, {"name": "dawn"}]},
        "Description": {"type": "rich_text", "rich_text": [{"plain_text": "A heron."}]},
    }
    choices, problems = publish_choices(props, NOW)
    assert problems == []
    assert choices == {"visibility": "unlisted", "tags": ["birds", "dawn"], "description": "A heron."}
    later = {"type": "date", "date": {"start": "2026-12-08T09:30:00.000-08:00"}}
    choices, problems = publish_choices({"Publish At": later}, NOW)
    assert choices == {"publish_at": "2026-12-08T17:30:00Z"} and problems == []
    for date, words in (
        ("2026-12-08", "Include time"),
        ("2026-12-01T09:00:00.000Z", "in the past"),
    ):
        _, problems = publish_choices({"Publish At": {"type": "date", "date": {"start": date}}}, NOW)
        assert len(problems) == 1 and problems[0].startswith("Publish At") and words in problems[0]
    _, problems = publish_choices(
        {"Publish At": later, "Visibility": {"type": "select", "select": {"name": "Public"}}}, NOW
    )
    assert any("set Visibility to Private" in p for p in problems)
    _, problems = publish_choices({"Visibility": {"type": "select", "select": {"name": "Secret"}}}, NOW)
    assert problems and "Private, Unlisted, Public" in problems[0]
    tags = {
        "type": "rich_text",
        "rich_text": [{"plain_text": ", ".join(f"t{i:02d}" + "x" * 37 for i in range(11))}],
    }
    choices, problems = publish_choices({"Tags": tags}, NOW)
    assert problems == [] and len(choices["tags"]) == 11  # 451 characters with the marker
    # With the channel's own tags, counted as YouTube counts them (a tag with a space is quoted).
    _, problems = publish_choices({"Tags": tags}, NOW, channel_tags=("river birds", "x" * 40))
    assert problems and "over YouTube's 500" in problems[0]


def test_the_quota_day_is_pacific_and_resets_at_its_midnight() -> None:
    # 07:30 UTC on 7 December is still 6 December in California (PST, UTC-8).
    early = datetime(2026, 12, 7, 7, 30, tzinfo=UTC)
    assert quota_day(early) == "2026-12-06"
    assert next_reset(early) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # PDT, UTC-7
    assert next_reset(summer) == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)
    # Every run reserves an upload (a resumed session may be gone); an older project counts
    # uploads in units, also when the script's own count is booked.
    assert needs(YouTubeQuota()) == (1, 503)
    assert needs(YouTubeQuota(insert_units=1600)) == (0, 1600 + 503)
    assert as_charged(YouTubeQuota(insert_units=1600), 1, 502) == (0, 2102)
    assert as_charged(YouTubeQuota(), 1, 502) == (1, 502)


def test_a_finished_video_that_published_shows_published_and_one_without_shows_ready() -> None:
    done = [ItemView("assembly", "succeeded")]
    assert shown_status("done", done) is Status.READY
    assert shown_status(
        "active", [*done, ItemView("final_gate", "succeeded"), ItemView("upload", "ready")]
    ) is (Status.UPLOADING)


def test_a_data_source_of_a_channel_that_publishes_needs_a_youtube_url_property() -> None:
    from daemon.notion.schema import _property_problems, database_properties

    ready = {name: {"type": next(iter(value))} for name, value in database_properties(["Nature"]).items()}
    assert _property_problems(ready, shared=True, publishes=True) == []
    without = {k: v for k, v in ready.items() if k != "YouTube URL"}
    assert _property_problems(without, shared=True) == []  # a channel that does not publish
    assert _property_problems(without, shared=True, publishes=True) == [
        "YouTube URL is missing: add a URL property named YouTube URL"
    ]
    wrong = {**ready, "Publish At": {"type": "rich_text"}}
    assert _property_problems(wrong, shared=True, publishes=True) == [
        "Publish At is a rich_text property: change it to a Date property named Publish At"
    ]
