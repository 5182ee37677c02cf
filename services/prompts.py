"""Prompt assembly: the storyboard's atmosphere joined to each item's own text, within provider limits."""

from __future__ import annotations

import re

from provider_facts import GEMINI_IMAGE_PROMPT_LIMIT, KLING_PROMPT_LIMIT
from services.errors import PromptError, PromptTooLong

DEFAULT_KEY_COLOR = "#00FF00"
SEPARATOR = "\n\n"

_KEY_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
# Clause ends where a shortened atmosphere still reads as a whole phrase.
_CLAUSE_END = re.compile(r"[,;.:!?]\s")
_SPACE = re.compile(r"\s")


def isolation_instruction(key_color: str = DEFAULT_KEY_COLOR) -> str:
    """The instruction that makes a character or prop keyable onto an environment frame."""
    if not _KEY_COLOR.fullmatch(key_color):
        raise PromptError(f"key colour {key_color!r} is not a #RRGGBB colour; use e.g. {DEFAULT_KEY_COLOR}")
    return (
        f"Draw the subject alone, isolated on a solid flat {key_color.upper()} background, "
        "no shadows, no scenery, nothing else in the frame."
    )


def image_subject(asset_prompt: str, *, isolated: bool, key_color: str = DEFAULT_KEY_COLOR) -> str:
    """The part of an image prompt that belongs to the asset and is never shortened."""
    subject = asset_prompt.strip()
    return f"{subject}{SEPARATOR}{isolation_instruction(key_color)}" if isolated else subject


def join_prompt(atmosphere: str, own_text: str) -> str:
    """Atmosphere first, then the item's own text, untrimmed."""
    atmosphere, own_text = atmosphere.strip(), own_text.strip()
    return f"{atmosphere}{SEPARATOR}{own_text}" if atmosphere else own_text


def fit_prompt(atmosphere: str, own_text: str, limit: int) -> str:
    """Join within `limit` characters by shortening the atmosphere, never the item's own text."""
    own_text = own_text.strip()
    if len(own_text) > limit:
        raise PromptTooLong(
            f"the item's own text is {len(own_text):,} characters, over the limit of {limit:,}; "
            f"shorten it by {characters(len(own_text) - limit)}"
        )
    room = limit - len(own_text) - len(SEPARATOR)
    return join_prompt(shorten(atmosphere.strip(), room), own_text)


def image_prompt(
    atmosphere: str,
    asset_prompt: str,
    *,
    isolated: bool,
    key_color: str = DEFAULT_KEY_COLOR,
    limit: int = GEMINI_IMAGE_PROMPT_LIMIT,
) -> str:
    """Gemini prompt for one asset; `isolated` (characters, props) adds the key-colour instruction."""
    return fit_prompt(atmosphere, image_subject(asset_prompt, isolated=isolated, key_color=key_color), limit)


def clip_prompt(atmosphere: str, motion: str, *, limit: int = KLING_PROMPT_LIMIT) -> str:
    """Kling image-to-video prompt for one scene: atmosphere, then the scene's motion."""
    return fit_prompt(atmosphere, motion, limit)


def characters(count: int) -> str:
    """'1 character', '2,431 characters': how lengths read in operator messages."""
    return f"{count:,} character{'' if count == 1 else 's'}"


def shorten(text: str, width: int) -> str:
    """Cut `text` to at most `width` characters at a clause end, else a word end; '' if nothing fits."""
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    # A boundary right after the limit still counts: "dawn, gold" cut at 4 keeps "dawn".
    clause_ends = [m.start() for m in _CLAUSE_END.finditer(text, 0, width + 2) if m.start() <= width]
    word_ends = [m.start() for m in _SPACE.finditer(text, 0, width + 1)]
    # A clause end in the second half keeps most of the atmosphere; earlier, a word end keeps more.
    if clause_ends and clause_ends[-1] >= width // 2:
        end = clause_ends[-1]
    elif word_ends and word_ends[-1] > 0:
        end = word_ends[-1]
    else:
        end = width
    return text[:end].rstrip(" ,;:.!?\n\t")
