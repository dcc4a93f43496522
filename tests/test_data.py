import itertools

import numpy as np
import pytest

import data
from data import EpisodeLoader, SceneCrops, Split, format_id_ranges, parse_id_range, prefetch, zoom_scene
from util import GREY, DataError, composite


@pytest.fixture(scope="module")
def train(tiny_data):
    return Split(tiny_data, "train")


def test_episode_shapes_and_targets(train):
    episode = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True).episode(4)
    assert episode["scene"].shape == (128, 128, 3)
    assert episode["anchors"].shape == episode["positives"].shape == (3, 2, 64, 64, 4)
    assert episode["anchor_backgrounds"].shape == (3, 2, 3)
    assert episode["masks"].shape == episode["visible_masks"].shape == (3, 16, 16)
    assert episode["boxes"].shape == (3, 2, 4)
    assert all(v.dtype == np.uint8 for k, v in episode.items() if k not in ("boxes", "obj_ids"))
    # the masks are those of the objects whose views were drawn, in the scene that was drawn
    scene = next(train.scene(i) for i in range(train.num_scenes)
                 if np.array_equal(train.scene(i)["rgb"], episode["scene"]))
    for c, obj_id in enumerate(episode["obj_ids"]):
        k = scene["obj_ids"].tolist().index(obj_id)
        assert np.array_equal(episode["masks"][c], scene["box_masks"][k])
        views = train.views(obj_id)
        for view in np.concatenate([episode["anchors"][c], episode["positives"][c]]):
            assert any(np.array_equal(view, v) for v in views)


def test_absent_queries_follow_with_empty_targets(train):
    plain = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=False).episode(1)
    episode = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=False, num_absent=2).episode(1)
    assert episode["anchors"].shape == (5, 2, 64, 64, 4) and episode["masks"].shape == (5, 16, 16)
    assert np.array_equal(episode["obj_ids"][:3], plain["obj_ids"])
    assert np.array_equal(episode["masks"][:3], plain["masks"])
    scene = next(train.scene(i) for i in range(train.num_scenes)
                 if np.array_equal(train.scene(i)["rgb"], episode["scene"]))
    absent = episode["obj_ids"][3:]
    assert len(set(absent)) == 2 and not set(absent) & set(scene["obj_ids"]) and set(absent) <= set(train.object_ids)
    assert not episode["masks"][3:].any() and not episode["visible_masks"][3:].any()
    assert (episode["boxes"][3:] == -1).all()
    for c, obj_id in zip((3, 4), absent):
        assert any(np.array_equal(episode["anchors"][c, 0], v) for v in train.views(obj_id))
    with pytest.raises(DataError, match="too few for 7 absent queries besides a scene's 4"):
        EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=7)


def test_anchors_and_positives_are_distinct_views(train):
    loader = EpisodeLoader(train, num_objects=4, num_views=3, seed=0, training=True)
    for i in range(10):
        episode = loader.episode(i)
        for c in range(4):
            views = np.concatenate([episode["anchors"][c], episode["positives"][c]])  # (2N, h, w, 4)
            flat = {v.tobytes() for v in views}
            assert len(flat) == 6, "the 2N views of an object must all be different renders"


def test_backgrounds_random_in_training_grey_otherwise(train):
    training = EpisodeLoader(train, 2, 2, seed=0, training=True).episode(0)
    evaluation = EpisodeLoader(train, 2, 2, seed=0, training=False).episode(0)
    assert len(np.unique(training["anchor_backgrounds"])) > 1
    assert (evaluation["anchor_backgrounds"] == GREY).all() and (evaluation["positive_backgrounds"] == GREY).all()


def test_deterministic_and_resumable(train):
    a = EpisodeLoader(train, 3, 2, seed=7, training=True)
    straight = list(itertools.islice(a.batches(2), 5))  # crosses an epoch (6 scenes)
    b = EpisodeLoader(train, 3, 2, seed=7, training=True)
    list(itertools.islice(b.batches(2), 3))
    resumed = EpisodeLoader(train, 3, 2, seed=7, training=True, position=b.position)
    for x, y in zip(straight[3:], itertools.islice(resumed.batches(2), 2)):
        assert all(np.array_equal(x[k], y[k]) for k in x)
    assert straight[0]["scene"].shape == (2, 128, 128, 3)
    other = next(EpisodeLoader(train, 3, 2, seed=8, training=True).batches(2))
    assert not np.array_equal(other["anchors"], straight[0]["anchors"])


def test_every_scene_once_per_epoch(train):
    loader = EpisodeLoader(train, 1, 1, seed=0, training=True)
    scenes = [loader.episode(i)["scene"].tobytes() for i in range(train.num_scenes)]
    assert len(set(scenes)) == train.num_scenes


def test_too_many_objects_or_views_is_refused(train):
    with pytest.raises(DataError, match="hold 4 objects each, fewer than the 5 objects"):
        EpisodeLoader(train, num_objects=5, num_views=1, seed=0, training=True)
    with pytest.raises(DataError, match="6 views per object, fewer than the 8 distinct"):
        EpisodeLoader(train, num_objects=1, num_views=4, seed=0, training=True)



def test_inference_episodes_need_only_anchors_and_may_use_random_backgrounds(train):
    loader = EpisodeLoader(train, num_objects=2, num_views=6, seed=0, training=False, positives=False)
    episode = loader.episode(0)
    assert episode["anchors"].shape[:2] == (2, 6) and "positives" not in episode
    assert (episode["anchor_backgrounds"] == GREY).all()
    coloured = EpisodeLoader(train, 2, 3, seed=0, training=False, background="random").episode(0)
    assert len(np.unique(coloured["anchor_backgrounds"].reshape(-1, 3), axis=0)) > 1


def test_training_episodes_cut_a_share_of_the_anchors_from_other_scenes(train):
    def episodes(**crop):
        loader = EpisodeLoader(train, num_objects=4, num_views=2, seed=3, training=True, num_absent=2, **crop)
        return [loader.episode(i) for i in range(6)]

    crops = SceneCrops(train)
    rendered, none, every, half = (episodes(), episodes(crops=crops, crop_share=0.0),
                                   episodes(crops=crops, crop_share=1.0), episodes(crops=crops, crop_share=0.5))
    assert all(np.array_equal(a["anchors"], b["anchors"]) for a, b in zip(rendered, none))
    for plain, cut in zip(rendered, every):  # the same objects and scene; anchors opaque crops, positives renders
        assert np.array_equal(plain["obj_ids"], cut["obj_ids"]) and np.array_equal(plain["scene"], cut["scene"])
        assert np.array_equal(plain["positives"], cut["positives"])
        found = [j for j, obj_id in enumerate(cut["obj_ids"]) if int(obj_id) not in crops.fallbacks]
        assert found and all((cut["anchors"][j][..., 3] == 255).all() for j in found)
    # a random share: some objects cut, some rendered (renders have a transparent surround)
    opaque = [(e["anchors"][j][..., 3] == 255).all() for e in half for j in range(len(e["obj_ids"]))]
    assert any(opaque) and not all(opaque)
    again = EpisodeLoader(train, num_objects=4, num_views=2, seed=3, training=True, num_absent=2, crops=crops,
                          crop_share=0.5).episode(5)
    assert np.array_equal(again["anchors"], half[5]["anchors"])  # a pure function of (seed, i)


def test_zoom_scene_by_hand():
    rgb = np.full((32, 32, 3), 255, np.uint8)  # white, one red 8x8 object at (8, 8); grid 4x4 (8 px cells)
    rgb[8:16, 8:16] = (255, 0, 0)
    boxes = np.array([[[8, 8, 16, 16], [-1, -1, -1, -1]], [[24, 24, 32, 32], [-1, -1, -1, -1]]], np.int16)
    visible = np.zeros((2, 4, 4), np.uint8)
    visible[0, 1, 1] = visible[1, 3, 3] = 1
    far, moved, box_masks, seen = zoom_scene(rgb, boxes, visible, 0.5, (0, 0))  # half size, top-left
    assert far[6, 6].tolist() == [255, 0, 0] and far[20, 20].tolist() == [255, 255, 255]  # the rest: border colour
    assert moved[0, 0].tolist() == [4, 4, 8, 8] and moved[1, 0].tolist() == [12, 12, 16, 16]
    assert (moved[:, 1] == -1).all()
    assert np.argwhere(box_masks[0]).tolist() == [[0, 0]] and np.argwhere(box_masks[1]).tolist() == [[1, 1]]
    assert np.argwhere(seen[0]).tolist() == [[0, 0]] and np.argwhere(seen[1]).tolist() == [[1, 1]]
    near, moved, box_masks, seen = zoom_scene(rgb, boxes, visible, 2.0, (-16, -16))  # the window 8..24, doubled
    assert near[2, 2].tolist() == [255, 0, 0] and near[30, 30].tolist() == [255, 255, 255]
    assert moved[0, 0].tolist() == [0, 0, 16, 16]
    assert moved[1, 0].tolist() == [-1] * 4 and not box_masks[1].any() and not seen[1].any()  # out of the frame
    assert box_masks[0, :2, :2].all() and box_masks[0].sum() == 4


def test_zoom_by_one_rebuilds_the_generated_targets(train):
    for index in range(train.num_scenes):
        scene = train.scene(index)
        rgb, boxes, box_masks, visible = zoom_scene(np.asarray(scene["rgb"]), scene["boxes"], scene["visible_masks"],
                                                    1.0, (0, 0))
        assert np.array_equal(rgb, scene["rgb"]) and np.array_equal(boxes, scene["boxes"])
        assert np.array_equal(box_masks, scene["box_masks"]) and np.array_equal(visible, scene["visible_masks"])


def test_zoomed_training_episodes(train):
    def episode(zoom, i):
        return EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=1,
                             zoom=zoom).episode(i)

    shrunk = []
    for i in range(4):
        plain, same, zoomed = episode(1.0, i), episode(1.0, i), episode(2.0, i)
        assert all(np.array_equal(plain[k], same[k]) for k in plain)
        assert np.array_equal(plain["anchors"], zoomed["anchors"])
        assert np.array_equal(plain["obj_ids"], zoomed["obj_ids"])
        assert not np.array_equal(plain["scene"], zoomed["scene"]) and zoomed["scene"].shape == plain["scene"].shape
        visible = zoomed["boxes"][..., 0] >= 0
        assert (zoomed["boxes"][visible] >= 0).all() and (zoomed["boxes"][visible] <= 128).all()
        assert not zoomed["masks"][3:].any()  # the absent query stays empty
        # zoomed out only: the whole scene shrunk into the frame, every instance kept, none larger
        out = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=1, zoom=2.0,
                            zoom_in=False).episode(i)
        shown = plain["boxes"][..., 0] >= 0
        assert np.array_equal(out["boxes"][..., 0] >= 0, shown)
        size = lambda b: b[..., 2:] - b[..., :2]  # noqa: E731
        assert (size(out["boxes"][shown]) <= size(plain["boxes"][shown]) + 1).all()  # +1: edges rounded outwards
        shrunk.append((size(out["boxes"][shown]) < size(plain["boxes"][shown])).any())
    assert any(shrunk)  # a factor near 1 may leave one episode's boxes as they were, not all four
    # a share of the scenes: each episode either the zoom's own or the plain one
    kept = [np.array_equal(EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=1,
                                         zoom=2.0, zoom_share=0.5).episode(i)["scene"], episode(1.0, i)["scene"])
            for i in range(8)]
    assert 0 < sum(kept) < 8


def test_composite_by_hand():
    rgba = np.array([[[[200, 100, 0, 255], [200, 100, 0, 0]], [[0, 0, 0, 51], [255, 255, 255, 255]]]],
                    dtype=np.uint8)  # (1, 2, 2, 4)
    background = np.array([[10, 20, 30]], dtype=np.uint8)  # (1, 3)
    out = composite(rgba, background)
    assert out.dtype == np.float32 and out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, 0, 0] * 255, [200, 100, 0], atol=1e-3)
    np.testing.assert_allclose(out[0, 0, 1] * 255, [10, 20, 30], atol=1e-3)
    np.testing.assert_allclose(out[0, 1, 0] * 255, [8, 16, 24], atol=1e-3)  # 20% black over the background


def test_prefetch_keeps_order_and_raises_errors():
    assert list(prefetch(iter(range(20)), depth=3)) == list(range(20))

    def broken():
        yield 1
        raise ValueError("bad chunk")

    items = prefetch(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad chunk"):
        next(items)


def test_parse_id_range():
    assert parse_id_range("800-899") == list(range(800, 900))
    assert parse_id_range("3-5,10000-10001") == [3, 4, 5, 10000, 10001]
    with pytest.raises(ValueError, match="must look like"):
        parse_id_range("800")
    with pytest.raises(ValueError, match="empty"):
        parse_id_range("0-9,12-11")
    with pytest.raises(ValueError, match="overlap"):
        parse_id_range("0-9,5-20")
    assert format_id_ranges([900, 901, 902, 1000, 1002, 1003]) == "900-902,1000-1000,1002-1003"
    assert parse_id_range(format_id_ranges([5, 7, 8])) == [5, 7, 8]


class TwoScenes:
    """A split of two 32x32 black scenes holding object 7 once each: a red 4x4 square at (10, 10)
    in scene 0, a green one at (0, 0) in scene 1."""

    manifest = {"arrays": {"views": {"shape": [3, 8, 8, 4]}}}
    num_scenes = 2

    def scene(self, index):
        rgb = np.zeros((32, 32, 3), np.uint8)
        x = (10, 0)[index]
        rgb[x:x + 4, x:x + 4] = ((255, 0, 0), (0, 255, 0))[index]
        return {"rgb": rgb, "obj_ids": np.array([7]), "boxes": np.array([[[x, x, x + 4, x + 4], [-1, -1, -1, -1]]]),
                "pixel_counts": np.array([[16, 0]])}

    def views(self, obj_id):
        return np.full((3, 8, 8, 4), obj_id, np.uint8)


def test_scene_crops_by_hand():
    crops = SceneCrops(TwoScenes())  # margin 0.25: a 6x6 square around a 4x4 box, resized to 8x8
    red = crops.crop(TwoScenes().scene(0)["rgb"], (10, 10, 14, 14))
    assert red.shape == (8, 8, 4) and (red[..., 3] == 255).all()
    assert red[4, 4, :3].tolist() == [255, 0, 0] and red[0, 0, :3].tolist() == [0, 0, 0]  # the object, its surround
    corner = crops.crop(TwoScenes().scene(1)["rgb"], (0, 0, 4, 4))  # past the scene's edge: grey
    assert corner[0, 0, :3].tolist() == [GREY] * 3 and corner[4, 4, :3].tolist() == [0, 255, 0]
    # a query in scene 0 gets crops of scene 1 only (repeated), never of the scene searched
    views = crops.views(7, 3, scene_index=0)
    assert views.shape == (3, 8, 8, 4) and (views == views[0]).all() and views[0, 4, 4, :3].tolist() == [0, 255, 0]
    assert crops.views(7, 1, scene_index=1)[0, 4, 4, :3].tolist() == [255, 0, 0]
    assert crops.fallbacks == set()
    assert (crops.views(8, 2, scene_index=0) == 8).all() and crops.fallbacks == {8}  # nowhere: its renders
    drawn = crops.views(7, 2, scene_index=None, rng=np.random.default_rng(0))  # training: a draw of both
    assert drawn.shape == (2, 8, 8, 4) and {tuple(v[4, 4, :3]) for v in drawn} <= {(255, 0, 0), (0, 255, 0)}


NEUTRAL = dict(brightness=(1.0, 1.0), contrast=(1.0, 1.0), gamma=(1.0, 1.0), saturation=(1.0, 1.0),
               hue_degrees=(0.0, 0.0), blur_share=0.0, blur_sigma=(1.0, 1.0), noise_share=0.0, noise_std=(1.0, 1.0),
               jpeg_share=0.0, jpeg_quality=(90, 90))


def test_photometric_augmentation_by_hand(monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    monkeypatch.setattr(data, "PHOTOMETRIC", NEUTRAL)
    assert np.array_equal(data.photometric_augmentation(images, np.random.default_rng(1)), images)
    monkeypatch.setattr(data, "PHOTOMETRIC", {**NEUTRAL, "brightness": (1.5, 1.5)})
    expected = np.minimum(np.rint(images * 1.5), 255)
    assert np.abs(data.photometric_augmentation(images, np.random.default_rng(1)) - expected).max() <= 1
    monkeypatch.setattr(data, "PHOTOMETRIC", {**NEUTRAL, "saturation": (0.0, 0.0)})  # grey: Y = .299R + .587G + .114B
    grey = data.photometric_augmentation(images, np.random.default_rng(1)).astype(int)
    assert np.abs(grey - np.rint(images @ np.array([0.299, 0.587, 0.114]))[..., None]).max() <= 1
    monkeypatch.setattr(data, "PHOTOMETRIC", {**NEUTRAL, "gamma": (2.0, 2.0)})
    expected = np.rint((images / 255) ** 2 * 255)
    assert np.abs(data.photometric_augmentation(images, np.random.default_rng(1)) - expected).max() <= 1
    monkeypatch.setattr(data, "PHOTOMETRIC", {**NEUTRAL, "contrast": (0.0, 0.0)})  # every pixel the image's mean
    flat = data.photometric_augmentation(images, np.random.default_rng(1)).astype(int)
    assert np.abs(flat - np.rint(images.mean(axis=(1, 2, 3)))[:, None, None, None]).max() <= 1


def test_photometric_training_episodes_change_only_the_pixels(train):
    plain = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=1).episode(2)
    loader = EpisodeLoader(train, num_objects=3, num_views=2, seed=0, training=True, num_absent=1, photometric=True)
    augmented = loader.episode(2)
    assert np.array_equal(augmented["scene"], loader.episode(2)["scene"])  # still a function of (seed, i)
    for key in plain:
        same = np.array_equal(plain[key], augmented[key])
        assert same == (key not in ("scene", "anchors", "positives")), key
    assert np.array_equal(plain["anchors"][..., 3], augmented["anchors"][..., 3])  # the object's outline kept
    assert plain["scene"].shape == augmented["scene"].shape and augmented["scene"].dtype == np.uint8
