import numpy as np
import pytest

from render import Renderer, scene_labels


@pytest.fixture(scope="module")
def renderer():
    r = Renderer()
    yield r
    r.close()


def test_reference_view_is_rgba_with_transparent_background(renderer):
    view = renderer.reference_view(7, np.random.default_rng(0))
    assert view.shape == (64, 64, 4) and view.dtype == np.uint8
    alpha = view[..., 3]
    assert set(np.unique(alpha)) == {0, 255}
    assert (alpha[0, :] == 0).all() and (alpha[-1, :] == 0).all()  # the object sits in the middle
    assert 20 < (alpha == 255).sum() < 64 * 64 / 2


def test_scene_shapes_and_labels_are_consistent(renderer):
    obj_ids = [3, 14, 15, 92]
    rgb, labels = renderer.scene(obj_ids, np.random.default_rng(1), size=128, grid=16, instances=2)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    assert labels.obj_ids.tolist() == obj_ids
    assert labels.box_masks.shape == labels.visible_masks.shape == (4, 16, 16)
    assert labels.boxes.shape == (4, 2, 4) and labels.pixel_counts.shape == (4, 2)
    visible = labels.pixel_counts > 0  # (K, I)
    assert visible.sum() >= 4, "most instances should land on the table in view"
    boxes = labels.boxes[visible]  # (n, 4)
    assert (boxes >= 0).all() and (boxes <= 128).all()
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    assert (labels.boxes[~visible] == -1).all()
    for k in range(4):
        has_pixels = visible[k].any()
        assert labels.box_masks[k].any() == has_pixels and labels.visible_masks[k].any() == has_pixels
        # the padded boxes cover every visible pixel
        assert (labels.box_masks[k] >= labels.visible_masks[k]).all()


def test_same_seed_same_bytes_whatever_came_before(renderer):
    a = renderer.scene([1, 2, 3, 4], np.random.default_rng(5), size=64, grid=8, instances=1)
    renderer.reference_view(9, np.random.default_rng(0))
    b = renderer.scene([1, 2, 3, 4], np.random.default_rng(5), size=64, grid=8, instances=1)
    c = renderer.scene([1, 2, 3, 4], np.random.default_rng(6), size=64, grid=8, instances=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1].box_masks, b[1].box_masks)
    assert not np.array_equal(a[0], c[0])


def test_scene_labels_by_hand():
    seg = np.full((640, 640), -1, dtype=np.int32)  # cells of 8 px on an 80x80 grid, 3 px padding
    seg[20:30, 10:20] = 5  # object slot 0, instance 1: x 10..19, y 20..29
    seg[100:101, 200:216] = 6  # object slot 1, instance 0: one row, x 200..215
    labels = scene_labels(seg, {5: (0, 1), 6: (1, 0)}, np.array([42, 43]), grid=80, instances=2)
    assert labels.boxes[0, 1].tolist() == [10, 20, 20, 30] and labels.pixel_counts[0, 1] == 100
    assert labels.boxes[0, 0].tolist() == [-1, -1, -1, -1] and labels.pixel_counts[0, 0] == 0
    # padded box x 7..22, y 17..32 -> cells x 0..2, y 2..4
    assert np.argwhere(labels.box_masks[0]).min(0).tolist() == [2, 0]
    assert np.argwhere(labels.box_masks[0]).max(0).tolist() == [4, 2]
    assert labels.box_masks[0].sum() == 9
    # pixels x 10..19 -> cells 1..2, y 20..29 -> cells 2..3
    assert sorted(map(tuple, np.argwhere(labels.visible_masks[0]))) == [(2, 1), (2, 2), (3, 1), (3, 2)]
    # row 100 -> cell 12; padded y 97..103 -> cells 12; x 197..218 -> cells 24..27
    assert sorted(map(tuple, np.argwhere(labels.box_masks[1]))) == [(12, 24), (12, 25), (12, 26), (12, 27)]
    assert sorted(map(tuple, np.argwhere(labels.visible_masks[1]))) == [(12, 25), (12, 26)]
