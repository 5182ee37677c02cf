"""Assembly plan: frame-aligned scene lengths, narration windows, the loudness measurement."""

from __future__ import annotations

import pytest

from scripts._lib import assembly

LOUDNORM_LOG = """
[Parsed_loudnorm_0 @ 0x5]
{
	"input_i" : "-27.61",
	"input_tp" : "-8.12",
	"input_lra" : "6.40",
	"input_thresh" : "-38.00",
	"output_i" : "-14.2",
	"output_tp" : "-1.5",
	"output_lra" : "5.0",
	"output_thresh" : "-24.5",
	"normalization_type" : "dynamic",
	"target_offset" : "0.21"
}
"""


def test_scene_lengths_are_whole_frames_plus_the_tail() -> None:
    timings = assembly.timeline([4.0, 2.51], tail_s=0.4, fps=24)
    assert timings[0].length_s == pytest.approx(106 / 24)
    assert timings[1].start_s == pytest.approx(106 / 24)
    assert timings[1].length_s * 24 == pytest.approx(round(timings[1].length_s * 24))
    assert timings[1].length_s >= 2.91
    assert timings[1].as_meta(2)["narration_end_s"] == pytest.approx(106 / 24 + 2.51, abs=1e-3)


def test_loudness_measurement_is_parsed() -> None:
    measured = assembly.parse_loudness(LOUDNORM_LOG)
    assert measured is not None
    assert (measured.input_i, measured.target_offset) == (-27.61, 0.21)


def test_silence_is_not_normalised() -> None:
    assert assembly.parse_loudness(LOUDNORM_LOG.replace('"-27.61"', '"-inf"')) is None


def test_final_graph_wires_every_scene() -> None:
    timings = assembly.timeline([3.0, 5.0, 2.0], 0.4, 24)
    measured = assembly.parse_loudness(LOUDNORM_LOG)
    graph = assembly.final_graph(timings, -18, -14, assembly.Format(), measured)
    assert "[0:v:0]" in graph
    assert "[3:v:0]" in graph
    assert "[6:v:0]" in graph
    assert "[8:a:0]" in graph
    assert "volume=-18dB" in graph
    assert "concat=n=3:v=1:a=1" in graph
    assert "linear=true" in graph
    assert "measured_I=-27.61" in graph
    assert "tpad=stop_mode=clone" in graph
