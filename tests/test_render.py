import numpy as np
import pytest

from render import (APPEARANCES, EVERYDAY, FIRST_EVERYDAY, FIRST_PROCEDURAL, LAST_ID, PART_KINDS, REFERENCE_EYE,
                    Lighting, Renderer, object_family, procedural_parts, scene_labels)


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


def test_the_fixed_appearance_draws_nothing_and_renders_as_before(renderer):
    fixed = APPEARANCES["fixed"]
    rng = np.random.default_rng(3)
    assert fixed.lighting(rng) == Lighting() and fixed.reference_eye(rng) == REFERENCE_EYE
    assert fixed.table_colour(rng) is None
    assert rng.uniform() == np.random.default_rng(3).uniform()  # the generator was not advanced
    assert Lighting().camera_arguments() == {"lightDirection": (0, 1, 1), "lightColor": (1, 1, 1), "shadow": 1}
    assert np.array_equal(renderer.reference_view(7, np.random.default_rng(0)),
                          renderer.reference_view(7, np.random.default_rng(0), appearance=fixed))


def test_random_appearance_draws_light_camera_and_table_within_its_ranges():
    random = APPEARANCES["random"]
    rng = np.random.default_rng(0)
    for _ in range(50):
        lighting = random.lighting(rng)
        elevation = np.degrees(np.arcsin(lighting.direction[2] / np.linalg.norm(lighting.direction)))
        assert 20 - 1e-9 <= elevation <= 90 + 1e-9
        assert max(lighting.colour) == pytest.approx(1.0) and min(lighting.colour) >= 0.65 - 1e-9  # saturation <= 0.35
        ambient, diffuse, specular = lighting.coefficients
        assert 0.3 <= ambient <= 0.8 and 0.2 <= diffuse <= 0.7 and 0 <= specular <= 0.4
        assert 0.2 - 1e-9 <= np.linalg.norm(random.reference_eye(rng)) <= 0.32 + 1e-9
        assert all(0.4 <= c <= 1 for c in random.table_colour(rng)[:3])
    relit = APPEARANCES["relit"].lighting(rng)  # the robustness light: lower and more tinted than any above
    assert np.degrees(np.arcsin(relit.direction[2] / np.linalg.norm(relit.direction))) <= 20 + 1e-9
    assert min(relit.colour) <= 0.6 + 1e-9


def test_backlit_references_are_darker_than_front_lit_ones(renderer):
    front = [renderer.reference_view(i, np.random.default_rng(i)) for i in range(20)]
    back = [renderer.reference_view(i, np.random.default_rng(i), appearance=APPEARANCES["backlit"])
            for i in range(20)]

    def brightness(views):
        return np.mean([v[..., :3][v[..., 3] == 255].mean() for v in views])

    assert brightness(back) < 0.8 * brightness(front)


def test_every_object_family_renders_and_unknown_ids_are_refused(renderer):
    for obj_id in (FIRST_EVERYDAY, FIRST_EVERYDAY + len(EVERYDAY) - 1, FIRST_PROCEDURAL, LAST_ID):
        view = renderer.reference_view(obj_id, np.random.default_rng(0))
        assert 20 < (view[..., 3] == 255).sum() < 64 * 64 * 0.8, obj_id  # in view, about a block's size
    assert [object_family(i) for i in (0, 999, 1000, 10000)] == ["blocks", "blocks", "everyday", "procedural"]
    for bad in (-1, 1000 + len(EVERYDAY), 9999, LAST_ID + 1):
        with pytest.raises(ValueError, match="names no object"):
            object_family(bad)


def test_procedural_objects_are_a_function_of_their_id(renderer):
    assert repr(procedural_parts(10007)) == repr(procedural_parts(10007))
    assert repr(procedural_parts(10007)) != repr(procedural_parts(10008))
    parts = [procedural_parts(i) for i in range(FIRST_PROCEDURAL, FIRST_PROCEDURAL + 200)]
    assert {len(p) for p in parts} == {1, 2, 3, 4}
    assert {kind for p in parts for kind, *_ in p} == set(PART_KINDS)
    assert any(len({rgba for *_, rgba in p}) > 1 for p in parts)  # some in more than one colour
    rgb, labels = renderer.scene([10000, 10001, 10002, 10003], np.random.default_rng(1), size=128, grid=16,
                                 instances=2)
    assert (labels.pixel_counts > 0).sum() >= 4  # they fall on the table and are labelled like blocks
