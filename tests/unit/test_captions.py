"""Captions: words from ElevenLabs' character alignment, readable cues, SubRip, libass' style."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts._lib.captions import (
    LINE_CHARS,
    MAX_CUE_S,
    MIN_CUE_S,
    Cue,
    Style,
    Word,
    cues,
    srt,
    words_from_alignment,
    wrap,
)


def _alignment(text: str, per_char: float = 0.06, lead: float = 0.25) -> dict[str, list[object]]:
    starts = [lead + i * per_char for i in range(len(text))]
    return {
        "characters": list(text),
        "character_start_times_seconds": starts,
        "character_end_times_seconds": [t + per_char for t in starts],
    }


def test_words_take_their_first_letters_start_and_last_letters_end() -> None:
    words = words_from_alignment(_alignment("At  first light."))
    assert [w.text for w in words] == ["At", "first", "light."]
    assert words[0].start == pytest.approx(0.25)
    assert words[0].end == pytest.approx(0.25 + 2 * 0.06)
    assert words[2].start == pytest.approx(0.25 + 10 * 0.06)
    assert words[2].end == pytest.approx(0.25 + 16 * 0.06)


def test_an_alignment_whose_lists_disagree_is_refused() -> None:
    bad = _alignment("abc")
    bad["character_end_times_seconds"] = [0.1]
    with pytest.raises(ValueError, match="3 characters"):
        words_from_alignment(bad)


def test_a_long_line_is_split_in_two_balanced_lines() -> None:
    text = "the river wakes and every creature along its banks begins the day"
    lines = wrap(text)
    assert len(lines) == 2
    assert all(len(line) <= LINE_CHARS for line in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 12
    assert " ".join(lines) == text


def test_a_sentence_ends_its_cue_and_a_short_cue_stays_a_second_when_there_is_room() -> None:
    words = [
        Word("Dawn.", 0.2, 0.5),
        Word("The", 1.9, 2.0),
        Word("river", 2.0, 2.3),
        Word("wakes.", 2.3, 2.8),
    ]
    out = cues(words, offset=10.0, until=14.0)
    assert [c.lines for c in out] == [("Dawn.",), ("The river wakes.",)]
    assert out[0].start == pytest.approx(10.2)
    assert out[0].end == pytest.approx(11.2)  # held MIN_CUE_S, the next cue starts later
    assert out[1].end == pytest.approx(12.9)  # 1 s after its start (11.9), within `until`


def test_a_short_cue_never_overlaps_the_next() -> None:
    words = [Word("Go.", 0.0, 0.2), Word("Now.", 0.5, 0.7)]
    first, second = cues(words)
    assert first.end <= second.start


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="abcdefghij", min_size=1, max_size=14), st.floats(0.05, 0.6), st.booleans()
        ),
        min_size=1,
        max_size=80,
    )
)
def test_cues_are_readable_ordered_and_say_every_word(spec: list[tuple[str, float, bool]]) -> None:
    words, t = [], 0.3
    for text, length, stop in spec:
        words.append(Word(text + ("." if stop else ""), t, t + length))
        t += length + 0.05
    out = cues(words, offset=5.0, until=5.0 + t + 1.0)
    assert " ".join(" ".join(c.lines) for c in out).split() == [w.text for w in words]
    for a, b in itertools.pairwise(out):
        assert a.end <= b.start
    for n, cue in enumerate(out):
        assert 1 <= len(cue.lines) <= 2
        assert all(len(line) <= LINE_CHARS for line in cue.lines)
        assert cue.end - cue.start <= MAX_CUE_S + 1e-6
        room = (out[n + 1].start if n + 1 < len(out) else 5.0 + t + 1.0) - cue.start
        assert cue.end - cue.start >= min(MIN_CUE_S, room - 0.05) - 1e-6
    assert out[0].start == pytest.approx(5.0 + words[0].start, abs=1e-3)


def test_srt_numbers_cues_with_millisecond_stamps() -> None:
    text = srt([Cue(1.5, 3.25, ("Hello there",)), Cue(3661.0, 3662.004, ("two", "lines"))])
    assert text == (
        "1\n00:00:01,500 --> 00:00:03,250\nHello there\n\n2\n01:01:01,000 --> 01:01:02,004\ntwo\nlines\n"
    )


def test_the_style_is_libass_overrides_in_its_288_line_script() -> None:
    style = Style(size=0.05, colour="#FFCC00", outline_colour="#101010", position="top")
    forced = style.force_style("Source Sans Pro Semibold")
    assert "FontName=Source Sans Pro Semibold" in forced
    assert "FontSize=14.4" in forced
    assert "PrimaryColour=&H0000CCFF" in forced
    assert "OutlineColour=&H00101010" in forced
    # SSA's legacy numbers, which libass reads in an SRT (ASS' numpad 8 put the text nowhere near
    # the top centre): 6 is top centre; the Shorts test in test_pipeline_e2e sees 10 in the middle.
    assert "Alignment=6" in forced
    assert "Alignment=10" in Style(position="middle").force_style("x")
    assert "Alignment=2" in Style().force_style("x")
    with pytest.raises(ValueError, match="#RRGGBB"):
        Style(colour="yellow").force_style("x")


def test_a_sentence_longer_than_one_cue_is_shared_evenly_no_lone_word() -> None:
    text = "River delta while dawn slow as stillness strike last herons beneath heron hunts in shallows"
    words, t = [], 0.0
    for token in (text + ".").split():
        words.append(Word(token, t, t + 0.3))
        t += 0.35
    out = cues(words)
    assert len(out) == 2
    lengths = [len(" ".join(c.lines)) for c in out]
    assert min(lengths) >= 0.6 * max(lengths), lengths
