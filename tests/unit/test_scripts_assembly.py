"""Assembly plan: frame-aligned scene lengths, narration windows, the loudness measurement."""

from __future__ import annotations

import pytest

from scripts._lib import assembly

EBUR128_LOG = """
[Parsed_ebur128_0 @ 0x5] t: 9.9 TARGET:-23 LUFS M: -15.2 S: -14.9 I: -14.1 LUFS LRA: 3.2 LU
[Parsed_ebur128_0 @ 0x5] Summary:

  Integrated loudness:
    I:         -27.6 LUFS
    Threshold: -38.0 LUFS

  Loudness range:
    LRA:         6.4 LU
    Threshold:  -48.1 LUFS
    LRA low:    -31.0 LUFS
    LRA high:   -24.6 LUFS

  True peak:
    Peak:       -8.1 dBFS
"""


# Two files measured in one run (meters_graph): each filter logs under its own name, in any order.
METERS_LOG = """
[astats@c1 @ 0x7f9c] Overall
[astats@c1 @ 0x7f9c] Number of samples: 192000
[ebur128@m1 @ 0x7f9d] Summary:

  Integrated loudness:
    I:         -23.1 LUFS
    Threshold: -33.1 LUFS

  True peak:
    Peak:      -13.1 dBFS
[astats@c0 @ 0x7f9e] Overall
[astats@c0 @ 0x7f9e] Number of samples: 153600
[ebur128@m0 @ 0x7f9f] Summary:

  Integrated loudness:
    I:         -91.3 LUFS
    Threshold: -70.0 LUFS

  True peak:
    Peak:      -80.5 dBFS
[out#0/null @ 0x5639] video:0KiB audio:600KiB
"""


def test_every_file_is_measured_in_one_run_and_read_back_by_its_input() -> None:
    graph = assembly.meters_graph(2)
    assert "[0:a:0]aresample=48000" in graph and "ebur128@m1=" in graph and "astats@c1=" in graph
    assert graph.endswith("[o1]")
    assert assembly.parse_meters(METERS_LOG, 2) == [
        (3.2, None),  # silent: nothing to bring up
        (4.0, -23.1),
    ]
    with pytest.raises(ValueError, match="input 2"):
        assembly.parse_meters(METERS_LOG, 3)


def test_scene_lengths_are_whole_frames_plus_the_tail() -> None:
    timings = assembly.timeline([4.0, 2.51], tail_s=0.4, fps=24)
    assert timings[0].length_s == pytest.approx(106 / 24)
    assert timings[1].start_s == pytest.approx(106 / 24)
    assert timings[1].length_s * 24 == pytest.approx(round(timings[1].length_s * 24))
    assert timings[1].length_s >= 2.91
    assert timings[1].as_meta(2)["narration_end_s"] == pytest.approx(106 / 24 + 2.51, abs=1e-3)


def test_loudness_and_true_peak_come_from_the_summary() -> None:
    measured = assembly.parse_ebur128(EBUR128_LOG)
    assert measured == assembly.Loudness(integrated=-27.6, true_peak=-8.1)


def test_silence_is_not_brought_up() -> None:
    assert assembly.parse_ebur128(EBUR128_LOG.replace("-27.6 LUFS", "-inf LUFS")) is None
    assert assembly.parse_ebur128(EBUR128_LOG.replace("-27.6 LUFS", "-90.0 LUFS")) is None
    # What ebur128 prints for digital silence: its floor.
    assert assembly.parse_ebur128(EBUR128_LOG.replace("-27.6 LUFS", "-70.0 LUFS")) is None
    assert assembly.parse_ebur128(EBUR128_LOG.replace("-27.6 LUFS", "-69.9 LUFS")) is not None
    with pytest.raises(ValueError, match="no summary"):
        assembly.parse_ebur128("nothing measured")


def test_the_mix_wires_every_scene_and_the_render_masters_it_with_one_gain_and_a_limiter() -> None:
    timings = assembly.timeline([3.0, 5.0, 2.0], 0.4, 24)
    gains = assembly.Gains((1.5, 0.0, -2.0), (-18.0, -20.0, -22.5))
    mix = assembly.mix_graph(timings, gains)
    # Narration and bed per scene (inputs 0-5), each at its gain; measured on its way out.
    assert "[0:a:0]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,volume=1.50dB" in mix
    assert "[5:a:0]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,volume=-22.50dB" in mix
    assert mix.endswith(f"{assembly.METER}[out]")
    assert "sidechaincompress" not in mix  # no music
    assert "alimiter" not in mix  # mastered later, from the mixed file
    graph = assembly.final_graph(timings, assembly.Format(), 13.6)
    # The clips are inputs 0-2, the mixed sound input 3.
    assert "[0:v:0]" in graph and "[1:v:0]" in graph and "[2:v:0]" in graph
    assert "[3:a:0]volume=13.60dB,aresample=192000,alimiter=limit=0.7943" in graph
    # Hard cuts by default: the pictures concatenated here, the voices and the beds in the mix.
    assert "concat=n=3:v=1:a=0" in graph and mix.count("concat=n=3:v=0:a=1") == 2
    assert "level=false" in graph  # no automatic levelling: the gain stays linear
    assert "loudnorm" not in graph
    assert "out_color_matrix=bt709" in graph and "setparams=color_primaries=bt709" in graph
    assert "tpad=stop_mode=clone" in graph
    # Silence is left as it is.
    assert "alimiter" not in assembly.final_graph(timings, assembly.Format(), None)


def test_music_follows_the_scenes_inputs_and_is_ducked_by_the_voice_alone() -> None:
    timings = assembly.timeline([3.0, 5.0], 0.4, 24, crossfade_s=0.4)
    gains = assembly.Gains((0.0, 0.0), (-18.0, -18.0), music_db=-6.0)
    levels = assembly.Levels(voice_lufs=-14, music_lu=-18, duck_db=8)
    graph = assembly.mix_graph(timings, gains, levels=levels)
    assert "[4:a:0]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,volume=-6.00dB" in graph
    assert "[voice]asplit=2[speech][key]" in graph and "[music][key]sidechaincompress" in graph
    # The threshold sits duck_db under the voice's short-term level (3 dB under -14 LUFS).
    assert f"threshold={10 ** ((-14 - 3 - 8) / 20):.6f}" in graph
    assert "[speech][beds][ducked]amix=inputs=3" in graph
    # The music is as long as the cut and fades out over its last two seconds.
    assert f"atrim=duration={timings[-1].end_s:.6f}" in graph
    assert f"afade=t=out:st={timings[-1].end_s - 2:.6f}:d=2.0" in graph
    # The music's own level is duck_db over where it sits under the voice.
    assert levels.music_lufs() == -14 - 18 + 8


def test_a_files_gain_brings_it_to_its_level_within_bounds() -> None:
    assert assembly.normalising_gain(-40.0, -27.0) == 13.0
    assert assembly.normalising_gain(-80.0, -27.0) == assembly.MAX_BED_GAIN_DB  # no noise brought up
    assert assembly.normalising_gain(None, -27.0) == 0.0  # silence left alone
    # Per file: the voice to -14 LUFS, a bed to 13 LU under it, the music to 12 (18 - 6) under it.
    gains = assembly.Gains.for_levels(assembly.Levels(), [-20.5, None], [-40.0, -27.0], -31.0, has_music=True)
    assert gains == assembly.Gains((6.5, 0.0), (13.0, 0.0), 5.0)
    assert (
        assembly.Gains.for_levels(assembly.Levels(), [-14.0], [-27.0], None, has_music=False).music_db is None
    )


def test_crossfades_overlap_the_scenes_and_the_narration_waits_them_out() -> None:
    timings = assembly.timeline([3.0, 5.0, 2.0], 0.4, 24, crossfade_s=0.4, fade_s=0.5)
    assert assembly.overlap_of(timings) == pytest.approx(10 / 24)  # 0.4 s as whole frames
    first, second, third = timings
    assert first.narration_start_s == pytest.approx(0.5)  # after the fade from black
    assert second.start_s == pytest.approx(first.end_s - 10 / 24)
    assert second.narration_start_s == pytest.approx(second.start_s + 10 / 24)
    assert second.narration_start_s >= first.narration_start_s + 3.0  # the words never overlap
    assert third.end_s - (third.narration_start_s + 2.0) >= 0.4 + 0.5  # a tail, then the fade out
    gains = assembly.Gains((0.0,) * 3, (-18.0,) * 3)
    graph = assembly.final_graph(timings, assembly.Format(), 10.0, edges=assembly.Edges(0.4, 0.5))
    mix = assembly.mix_graph(timings, gains, edges=assembly.Edges(0.4, 0.5))
    assert f"xfade=transition=fade:duration={10 / 24:.6f}:offset={second.start_s:.6f}" in graph
    assert "acrossfade" in mix and "c1=qsin:c2=qsin" in mix  # equal power: the beds never dip
    assert "fade=t=in:st=0:d=0.500" in graph and "afade=t=out" in mix


def test_a_clip_shorter_than_its_scene_is_slowed_up_to_the_limit_never_frozen_within_it() -> None:
    timings = assembly.timeline([3.0, 6.5, 9.0], 0.4, 24, crossfade_s=0.4)
    slow = assembly.slowdowns(timings, [5.0, 5.0, 5.0], 1.5)
    assert slow[0] == 1.0  # long enough
    assert slow[1] == pytest.approx(timings[1].length_s / 5.0) and slow[1] < 1.5
    assert slow[2] == 1.5  # the limit: what is left beyond it holds the last frame
    graph = assembly.final_graph(timings, assembly.Format(), None, slow=slow)
    assert f"setpts={slow[1]:.6f}*(PTS-STARTPTS)" in graph and "setpts=1.500000*(PTS-STARTPTS)" in graph


def test_an_end_card_follows_the_last_tail_and_grows_to_the_length_floor() -> None:
    plain = assembly.timeline([3.0, 4.0], 0.4, 24, crossfade_s=0.4, fade_s=0.5)
    assert plain[-1].card_s == 0 and plain[-1].picture_s == plain[-1].length_s
    carded = assembly.timeline([3.0, 4.0], 0.4, 24, crossfade_s=0.4, fade_s=0.5, outro_s=3.0)
    last = carded[-1]
    # The clip shows its lead, the words and the tail; then 3 s of card and the fade to black.
    assert last.picture_s == pytest.approx(last.lead_s + 4.0 + 0.4, abs=1 / 24)
    assert last.card_s == pytest.approx(3.0 + 0.5, abs=1 / 24)
    assert last.card_in_s == pytest.approx(10 / 24)
    assert carded[-1].end_s == pytest.approx(plain[-1].end_s + 3.0, abs=1 / 24)
    # A floor longer than the cut: the card takes up the difference (25 s: YouTube's end screens).
    floored = assembly.timeline([3.0, 4.0], 0.4, 24, crossfade_s=0.4, fade_s=0.5, min_length_s=25)
    assert floored[-1].end_s == pytest.approx(25.0, abs=1 / 24) and floored[-1].end_s >= 25.0 - 1e-6
    # A cut already past the floor gets no card.
    assert assembly.timeline([30.0], 0.4, 24, min_length_s=25)[-1].card_s == 0
    # The last clip is slowed only to cover its own part, not the card's.
    assert assembly.slowdowns(carded, [5.0, 5.0], 1.5)[-1] == 1.0


def test_the_end_card_and_the_title_are_wired_after_the_mixed_sound() -> None:
    timings = assembly.timeline([3.0], 0.4, 24, crossfade_s=0.4, fade_s=0.5, outro_s=2.0)
    graph = assembly.final_graph(
        timings, assembly.Format(), 0.0, edges=assembly.Edges(0.4, 0.5), stills=assembly.Stills(2, 3)
    )
    assert "[2:v:0]scale=3840:2160,setsar=1,zoompan=z='1+0.06*on/" in graph  # pushed in, never frozen
    assert f"[c0][k0]xfade=transition=fade:duration={10 / 24:.6f}" in graph
    assert "[3:v:0]format=rgba" in graph and "[cut][title]overlay" in graph and "[titled]fade=t=in" in graph
