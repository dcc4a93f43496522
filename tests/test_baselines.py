import numpy as np
import pytest

from baselines import template_map, view_templates
from util import GREY


def test_template_matching_finds_a_pasted_template_and_its_box():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # (H, W, 3) uint8
    template = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)  # (h, w, 3): 8 high, 10 wide
    scene[28:36, 20:30] = template  # centre (x, y) = (25, 32)
    scores, boxes = template_map(scene, [template], grid=8)  # cells of 8 px
    assert scores.shape == (8, 8) and boxes.shape == (8, 8, 4)
    assert np.unravel_index(scores.argmax(), scores.shape) == (4, 3)  # the cell holding the centre
    assert scores[4, 3] > 0.99 and np.delete(scores.ravel(), 4 * 8 + 3).max() < 0.9
    np.testing.assert_allclose(boxes[4, 3], [20, 28, 30, 36])


def test_templates_are_cropped_to_the_object_on_grey_and_resized():
    view = np.zeros((64, 64, 4), dtype=np.uint8)  # transparent
    view[10:30, 20:30] = (255, 0, 0, 255)  # a red object 20 high, 10 wide
    small, big = view_templates(view[None], sizes=(8, 40))
    assert small.shape == (8, 4, 3) and big.shape == (40, 20, 3)
    assert (big == (255, 0, 0)).all()  # no grey: the crop is the object's box
    view[12, 22, 3] = 0  # a transparent pixel inside the box shows the grey
    assert (view_templates(view[None], sizes=(20,))[0] == GREY).all(axis=-1).any()


def test_baselines_and_ablations_run_end_to_end(tiny_data, trained, tmp_path):
    import ablations
    import baselines

    result = baselines.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--absent-queries", "1",
                             "--window", "16", "--out-dir", str(tmp_path / "b")])
    assert [r["method"] for r in result["rows"]] == ["yolz", "template", "embedding"]
    for row in result["rows"]:
        assert 0 <= row["average_precision"] <= 1 and 0 <= row["box_ap50"] <= 1 and row["queries_per_s"] > 0
    assert (tmp_path / "b" / "baselines_pr.png").stat().st_size > 0
    rows = ablations.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--absent-queries", "1",
                           "--views", "1", "6", "--random-views", "1", "--out-dir", str(tmp_path / "a")])
    assert [(r["num_views"], r["background"]) for r in rows] == [(1, "grey"), (6, "grey"), (1, "random")]
    assert (tmp_path / "a" / "ablations.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="has only 6 views per object"):
        ablations.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--views", "7"])
