"""Speech from eSpeak NG, loaded with ctypes from the espeakng-loader wheel.

The library keeps one global synthesizer per process and is not thread-safe, so every call goes
through one process-wide lock; synthesis runs far faster than real time, so the lock is short.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import espeakng_loader

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
DEFAULT_WPM = 175  # eSpeak's own default speaking rate
_VARIANTS = ("m1", "m2", "m3", "m7", "f1", "f2", "f3", "f4")

# The C library is a process-wide singleton; so is its lock (see the module docstring).
_LOCK = threading.Lock()


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class Word:
    start_char: int  # index into the text (0-based)
    length: int  # characters
    start: float  # seconds into the audio


@dataclass
class Speech:
    samples: bytes  # mono signed 16-bit little-endian
    rate: int
    words: list[Word] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / 2 / self.rate


class Synthesizer:
    """One eSpeak NG engine; create it once per process and share it."""

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._rate = 0
        # Filled by the callback while a synthesis runs (under _LOCK).
        self._chunks: list[bytes] = []
        self._words: list[tuple[int, int, int]] = []
        self._callback = _Callback(self._on_audio)  # kept referenced: the C side holds a pointer

    def _load(self) -> ctypes.CDLL:
        if self._lib is None:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
            lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
            lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
            lib.espeak_Synth.argtypes = (
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.POINTER(ctypes.c_uint),
                ctypes.c_void_p,
            )
            data = espeakng_loader.get_data_path().encode()
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
            if rate <= 0:
                raise RuntimeError(f"eSpeak NG failed to initialise (data path {data!r})")
            lib.espeak_SetSynthCallback(self._callback)
            self._rate = rate
            self._lib = lib
        return self._lib

    def _on_audio(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]
    ) -> int:
        if count > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self._words.append((event.text_position, event.length, event.audio_position))
            i += 1
        return 0  # 0: go on synthesizing

    def speak(self, text: str, voice_id: str = "", speed: float = 1.0) -> Speech:
        """Speech for `text`; the voice id picks a variant and pitch, `speed` scales the rate."""
        digest = hashlib.sha256(voice_id.encode()).digest()
        variant = _VARIANTS[digest[0] % len(_VARIANTS)]
        pitch = 35 + digest[1] % 30
        wpm = max(80, min(450, round(DEFAULT_WPM * speed)))
        encoded = text.encode("utf-8")
        with _LOCK:
            lib = self._load()
            self._chunks, self._words = [], []
            lib.espeak_SetVoiceByName(f"en-us+{variant}".encode())
            lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
            buf = ctypes.create_string_buffer(encoded)
            status = lib.espeak_Synth(buf, len(encoded) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise RuntimeError(f"eSpeak NG synthesis failed with status {status}")
            samples = b"".join(self._chunks)
            raw_words = list(self._words)
        words = [Word(max(0, pos - 1), length, ms / 1000) for pos, length, ms in raw_words]
        return Speech(samples, self._rate, words)


def pad(speech: Speech, lead: float, tail: float) -> Speech:
    """The speech with silence before and after (real TTS audio has both), word times shifted."""
    before = b"\x00\x00" * int(lead * speech.rate)
    after = b"\x00\x00" * int(tail * speech.rate)
    words = [Word(w.start_char, w.length, w.start + lead) for w in speech.words]
    return Speech(before + speech.samples + after, speech.rate, words)


def alignment(text: str, speech: Speech, speech_end: float, speed: float = 1.0) -> dict[str, list[Any]]:
    """Per-character start and end times: each word's letters spread over its spoken span, the
    characters between words placed at the gap. Approximate, like a forced alignment would be."""
    starts = [0.0] * len(text)
    ends = [0.0] * len(text)
    words = sorted(speech.words, key=lambda w: w.start_char)
    cursor_char, cursor_time = 0, words[0].start if words else 0.0
    for i, word in enumerate(words):
        begin = max(word.start, cursor_time)  # times never go backwards
        following = words[i + 1].start if i + 1 < len(words) else speech_end
        end = max(begin, min(following, begin + (0.085 * word.length + 0.08) / speed))
        for c in range(cursor_char, min(word.start_char, len(text))):  # spaces and punctuation
            starts[c] = ends[c] = cursor_time
        span = max(1, word.length)
        for k in range(span):
            c = word.start_char + k
            if c < len(text):
                starts[c] = begin + (end - begin) * k / span
                ends[c] = begin + (end - begin) * (k + 1) / span
        cursor_char, cursor_time = word.start_char + span, end
    for c in range(cursor_char, len(text)):
        starts[c] = ends[c] = cursor_time
    return {
        "characters": list(text),
        "character_start_times_seconds": [round(t, 3) for t in starts],
        "character_end_times_seconds": [round(t, 3) for t in ends],
    }
