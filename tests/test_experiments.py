"""Each analysis script of experiments/ runs once, end to end, on the tiny data and run: their
figures are the experiments' business, but a script that no longer runs is a record lost."""

import pytest

from experiments import (api_speed, box_score_mix, ensemble, false_alarms, far_camera_check, onnx_folding,
                         presence_gate, pyramid_gate, scene_size_check)


@pytest.fixture
def common(tiny_data, trained):
    return ["--run-dir", str(trained), "--data-dir", tiny_data]


def test_presence_gate_and_box_score_mix(common):
    rows = presence_gate.main([*common, "--split", "validation", "--absent-queries", "1", "--powers", "0", "2"])
    assert [r["power"] for r in rows] == [0, 2] and all(0 <= r["box_ap50"] <= 1 for r in rows)
    rows = box_score_mix.main([*common, "--absent-queries", "1", "--mix", "0", "1"])
    assert [r["a"] for r in rows] == [0, 1]


def test_false_alarms_and_ensemble(common):
    counts = false_alarms.main([*common, "--absent-queries", "1", "--nms", "0.5", "0.3"])
    assert set(counts) == {"present", "absent"}
    rows = ensemble.main([*common, "--absent-queries", "1"])
    assert [(r["split"], r["flips"]) for r in rows] == [("validation", False), ("test", False), ("validation", True),
                                                         ("test", True)]


def test_pyramid_gate(common):
    assert pyramid_gate.main([*common, "--absent-queries", "1", "--resamples", "10"]) in pyramid_gate.GATES


def test_the_api_and_demo_checks(common):
    assert api_speed.main([*common, "--scene", "0", "--objects", "2", "--views", "2"]) > 0
    assert set(far_camera_check.main([*common, "--scenes", "0", "1", "--views", "2"])) == {False, True}
    found = scene_size_check.main([*common, "--sizes", "128", "256", "--seeds", "1", "--objects", "3"])
    assert set(found) == {(0, 128), (0, 256)}


def test_folding_batch_norm_keeps_the_scene_pass(trained):
    result = onnx_folding.main(["--run-dir", str(trained), "--objects", "2", "--rounds", "2"])
    assert result["folded"] > 0 and max(result["differences"]) <= 1e-4 and min(result["ms"]) > 0
