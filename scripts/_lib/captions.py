"""Captions timed by the voice itself: ElevenLabs' character alignment becomes words, words become
cues a viewer can read (at most two lines of about 42 characters, on screen 1 to 7 s), and cues
become SubRip text and the style libass burns them in with."""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINE_CHARS = 42
PORTRAIT_LINE_CHARS = 24  # a Short's narrower frame
MAX_LINES = 2
MIN_CUE_S = 1.0
MAX_CUE_S = 7.0
GAP_S = 0.04  # between one cue's end and the next one's start, so players never show two at once
SENTENCE_END = re.compile(r"[.!?;:…]['\"’”)]*$")
WORDS_SUFFIX = ".words.json"  # the narration's sidecar: its words and their times in the file
# The burned-in captions' font, installed with pip (font-source-sans-pro, SIL Open Font License).
FONT_PACKAGE = "font_source_sans_pro"
# Per weight: the file, and the name libass finds it by.
FONTS = {
    "regular": ("SourceSansPro-Regular.ttf", "Source Sans Pro"),
    "semibold": ("SourceSansPro-Semibold.ttf", "Source Sans Pro Semibold"),
    "bold": ("SourceSansPro-Bold.ttf", "Source Sans Pro Bold"),
    "black": ("SourceSansPro-Black.ttf", "Source Sans Pro Black"),
}


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the audio file
    end: float


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


def words_from_alignment(alignment: Mapping[str, Any]) -> list[Word]:
    """Words (runs of non-space characters) with the first character's start and the last one's
    end. A malformed alignment raises ValueError."""
    chars = list(alignment["characters"])
    starts = [float(t) for t in alignment["character_start_times_seconds"]]
    ends = [float(t) for t in alignment["character_end_times_seconds"]]
    if not len(chars) == len(starts) == len(ends):
        raise ValueError(f"the alignment has {len(chars)} characters but {len(starts)}/{len(ends)} times")
    words: list[Word] = []
    text, first, last = "", 0.0, 0.0
    for char, start, end in zip(chars, starts, ends, strict=True):
        if char.isspace():
            if text:
                words.append(Word(text, first, last))
            text = ""
            continue
        if not text:
            first = start
        text += char
        last = max(end, first)
    if text:
        words.append(Word(text, first, last))
    return words


def wrap(text: str, width: int = LINE_CHARS) -> list[str]:
    """One line if it fits, else two of balanced length (each at most `width` if the words allow),
    else more (the caller then ends the cue sooner)."""
    if len(text) <= width:
        return [text]
    words = text.split()
    best: list[str] | None = None
    for cut in range(1, len(words)):
        top, bottom = " ".join(words[:cut]), " ".join(words[cut:])
        fits = len(top) <= width and len(bottom) <= width
        if fits and (best is None or abs(len(top) - len(bottom)) < abs(len(best[0]) - len(best[1]))):
            best = [top, bottom]
    if best is not None:
        return best
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def cues(
    words: Sequence[Word], offset: float = 0.0, until: float | None = None, width: int = LINE_CHARS
) -> list[Cue]:
    """Words grouped into cues, shifted by `offset` (where the audio starts in the video). A cue
    ends at a sentence's end, or before a word that would not fit in two lines of `width`
    characters or would keep it on screen past MAX_CUE_S; a short cue stays at least MIN_CUE_S
    where the next one (or `until`, the end of the audio's scene) leaves room."""
    groups: list[list[Word]] = []
    for word in words:
        group = groups[-1] if groups else None
        if group is not None and not SENTENCE_END.search(group[-1].text):
            text = " ".join(w.text for w in [*group, word])
            if len(wrap(text, width)) <= MAX_LINES and word.end - group[0].start <= MAX_CUE_S:
                group.append(word)
                continue
        groups.append([word])
    _rebalance(groups, width)
    out: list[Cue] = []
    for n, group in enumerate(groups):
        start = offset + group[0].start
        end = offset + group[-1].end
        limit = offset + groups[n + 1][0].start - GAP_S if n + 1 < len(groups) else until
        want = max(end, start + MIN_CUE_S)
        end = want if limit is None else max(end, min(want, limit))
        out.append(Cue(round(start, 3), round(end, 3), tuple(wrap(" ".join(w.text for w in group), width))))
    return out


def _fits(group: Sequence[Word], width: int) -> bool:
    text = " ".join(w.text for w in group)
    return len(wrap(text, width)) <= MAX_LINES and group[-1].end - group[0].start <= MAX_CUE_S


def _rebalance(groups: list[list[Word]], width: int) -> None:
    """A sentence that overflows one cue is shared between its cues more evenly: words move from
    the end of a cue to the start of the next (same sentence) while that narrows the difference,
    so that no cue is left with a lone word."""
    for n in range(1, len(groups)):
        before, after = groups[n - 1], groups[n]
        if SENTENCE_END.search(before[-1].text):
            continue
        while len(before) > 1:
            moved_before, moved_after = before[:-1], [before[-1], *after]
            if _length(moved_after) >= _length(before) or not _fits(moved_after, width):
                break
            before[:], after[:] = moved_before, moved_after


def _length(group: Sequence[Word]) -> int:
    return sum(len(w.text) + 1 for w in group)


def srt(all_cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    blocks = [
        f"{n}\n{_stamp(cue.start)} --> {_stamp(cue.end)}\n" + "\n".join(cue.lines) + "\n"
        for n, cue in enumerate(all_cues, start=1)
    ]
    return "\n".join(blocks)


def _stamp(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


def font_file(weight: str = "semibold") -> Path:
    return Path(str(importlib.resources.files(FONT_PACKAGE) / "files" / FONTS[weight][0]))


def words_path(audio: Path) -> Path:
    return audio.with_name(audio.name + WORDS_SUFFIX)


def words_json(text: str, words: Sequence[Word]) -> bytes:
    """A narration's sidecar: its text and its words' times (written beside the audio, before it)."""
    data = {"text": text, "words": [{"text": w.text, "start": w.start, "end": w.end} for w in words]}
    return json.dumps(data, ensure_ascii=False, indent=1).encode()


def read_words(audio: Path) -> list[Word] | None:
    """The narration's words from its sidecar; None when it has none (made before captions)."""
    path = words_path(audio)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Word(str(w["text"]), float(w["start"]), float(w["end"])) for w in data["words"]]


@dataclass(frozen=True)
class Style:
    """How burned-in captions look, in fractions of the frame height where sizes are concerned."""

    size: float = 0.05  # text height: 54 px in a 1080p frame
    colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    outline: float = 0.003  # outline width: 3 px at 1080p
    position: str = "bottom"  # bottom | middle | top
    weight: str = "semibold"  # a key of FONTS
    margin: float = 0.07  # from the bottom (or top) edge

    @property
    def font_name(self) -> str:
        return FONTS[self.weight][1]

    def force_style(self, font: str) -> str:
        """libass' override for an SRT input, whose script height (PlayResY) is 288."""
        # FFmpeg hands libass the SRT as an SSA-style script, whose alignment numbers are the legacy
        # ones (2 bottom, 6 top, 10 middle, each centred), not ASS' numpad (5 is then top left).
        alignment = {"bottom": 2, "middle": 10, "top": 6}[self.position]
        return ",".join(
            [
                f"FontName={font}",
                f"FontSize={self.size * 288:.1f}",
                f"PrimaryColour={_ass_colour(self.colour)}",
                f"OutlineColour={_ass_colour(self.outline_colour)}",
                "BorderStyle=1",
                f"Outline={self.outline * 288:.2f}",
                "Shadow=0",
                f"Alignment={alignment}",
                f"MarginV={round(self.margin * 288)}",
                "WrapStyle=2",  # our own line breaks, no re-wrapping
            ]
        )


HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


def _ass_colour(hex_colour: str) -> str:
    """#RRGGBB as ASS' &HAABBGGRR (alpha 00: opaque)."""
    if not HEX_COLOUR.fullmatch(hex_colour):
        raise ValueError(f"{hex_colour!r} is not a #RRGGBB colour")
    red, green, blue = hex_colour[1:3], hex_colour[3:5], hex_colour[5:7]
    return f"&H00{blue}{green}{red}".upper()
