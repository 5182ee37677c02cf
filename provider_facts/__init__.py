"""What the providers accept, in one place for the daemon's checks and the scripts' own.

Plain constants and no imports: `services` (pure) and `scripts` (dumb, standalone) both read them,
and neither may import the other. Sources: ../shared/reference/provider-apis.md.
"""

from __future__ import annotations

# Gemini's own bound is in tokens (tens of thousands for the image models), far above anything useful:
# past a few thousand characters an image prompt dilutes its subject. 4,000 characters (about 1,000
# tokens) is the practical limit this product enforces, so an operator hears about a runaway prompt
# from the storyboard check instead of getting a muddled image.
GEMINI_IMAGE_PROMPT_LIMIT = 4_000
KLING_PROMPT_LIMIT = 2_500  # image2video `prompt`, documented maximum
ELEVENLABS_TTS_LIMIT = 10_000  # eleven_multilingual_v2 per request
ELEVENLABS_TTS_FAST_LIMIT = 40_000  # flash and turbo models per request
ELEVENLABS_SFX_LIMIT = 450  # sound-generation `text`
# /v1/music `music_length_ms` bounds, in seconds.
ELEVENLABS_MUSIC_MIN_S = 3
ELEVENLABS_MUSIC_MAX_S = 300
