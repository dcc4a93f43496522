import types

import jax
import numpy as np
import pytest

from boxes import box_iou, cell_offset, decode, instances_found, kmeans_priors, nms, select, shape_iou
from inference import Inference
from losses import cell_targets, near_misses, target_iou
from metrics import box_metrics, detection_average_precision, match_detections
from models import ModelConfig

PRIORS = np.array([[8.0, 8.0], [16.0, 32.0]])


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0, 1]])
    np.testing.assert_allclose(shape_iou(np.array([[8.0, 8.0]]), PRIORS), [[1, 64 / 512]])


def test_kmeans_finds_two_well_separated_shapes():
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal([10, 10], 0.5, (50, 2)), rng.normal([40, 20], 0.5, (50, 2))])
    np.testing.assert_allclose(kmeans_priors(wh, 2), [[10, 10], [40, 20]], atol=0.5)
    with pytest.raises(ValueError, match="needs at least 3 boxes"):
        kmeans_priors(wh[:2], 3)


def test_targets_decode_back_to_the_boxes():
    boxes = np.array([[3, 5, 13, 14], [40, 8, 57, 40], [-1, -1, -1, -1]], dtype=np.int16)
    targets = np.asarray(jax.jit(cell_targets, static_argnums=(2, 3))(boxes, PRIORS, 8, 8.0))  # (G, G, A, 5)
    assert targets.shape == (8, 8, 2, 5) and targets[..., 0].sum() == 2  # the hidden one is dropped
    assert targets[1, 1, 0, 0] == 1 and targets[3, 6, 1, 0] == 1  # centre cell (row, col), best prior
    # raw outputs that hit the targets exactly: logit of the offsets, huge objectness where responsible
    raw = targets.copy()
    offsets = np.clip(targets[..., 1:3], 1e-6, 1 - 1e-6)
    raw[..., 1:3] = np.log(offsets / (1 - offsets))
    raw[..., 0] = np.where(targets[..., 0] > 0, 20.0, -20.0)
    found, scores = select(*decode(raw, PRIORS, 8.0), threshold=0.5, iou_threshold=0.5)
    np.testing.assert_allclose(found[np.argsort(found[:, 0])], boxes[:2], atol=1e-3)
    assert len(decode(raw, PRIORS, 8.0)[0]) == 8 * 8 * 2


def test_instances_found_by_hand():
    truths = [[0, 0, 10, 10], [20, 0, 30, 10]]
    # two boxes on the first (one counted), one half on the second (IoU 1/3: not found), one elsewhere
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [25, 0, 35, 10], [50, 50, 60, 60]]
    assert instances_found(boxes, truths) == 1
    assert instances_found(boxes, truths, iou_threshold=0.3) == 2
    assert instances_found([], truths) == instances_found(boxes, []) == 0


def test_geometric_box_scores_by_hand():
    """A box's objectness 0.8 (logit ln 4) in a cell with P(object) 0.2: geometric score sqrt(0.16) = 0.4;
    every prior of a cell reads that cell's P(object)."""
    raw = np.zeros((2, 2, 2, 5))
    raw[..., 0] = np.log(4.0)
    cell_probs = np.array([[0.2, 0.8], [0.0, 1.0]])
    _, objectness = decode(raw, PRIORS, 8.0)
    geometric = Inference(box_score="geometric").score(objectness, cell_probs)
    np.testing.assert_allclose(objectness, 0.8)
    np.testing.assert_allclose(geometric, [0.4, 0.4, 0.8, 0.8, 0.0, 0.0, np.sqrt(0.8), np.sqrt(0.8)])
    np.testing.assert_allclose(Inference(box_score="objectness").score(objectness, cell_probs), 0.8)
    gated = Inference(box_score="geometric", presence_power=2).score(objectness, cell_probs)  # peak 1.0
    np.testing.assert_allclose(gated, geometric)
    gated = Inference(box_score="objectness", presence_power=2).score(objectness, cell_probs / 2)  # peak 0.5
    np.testing.assert_allclose(gated, 0.8 * 0.25)


def test_three_cell_targets_by_hand():
    boxes = np.array([[3, 5, 13, 14],  # centre (1.0, 1.1875) cells: cell (col 1, row 1), nearer left and up
                      [14, 10, 22, 18],  # centre (2.25, 1.75): cell (2, 1); its left neighbour is the first's centre
                      [0, 20, 6, 28]], dtype=np.int16)  # centre (0.375, 3.0): no left neighbour on the grid
    targets = np.asarray(jax.jit(cell_targets, static_argnums=(2, 3, 4))(boxes, PRIORS, 8, 8.0, 3))
    responsible = {tuple(int(i) for i in at): tuple(float(v) for v in np.round(targets[tuple(at)][1:3], 4))
                   for at in np.argwhere(targets[..., 0])}
    assert responsible == {  # (row, col, prior): the centre's offset from that cell's corner, in cells
        (1, 1, 0): (0.0, 0.1875), (1, 0, 0): (1.0, 0.1875), (0, 1, 0): (0.0, 1.1875),  # the first, all three
        (1, 2, 0): (0.25, 0.75), (2, 2, 0): (0.25, -0.25),  # the second: centre and lower neighbour
        (3, 0, 0): (0.375, 0.0), (2, 0, 0): (0.375, 1.0)}  # the third: not wrapped round to column 7
    assert cell_targets(boxes, PRIORS, 8, 8.0)[..., 0].sum() == 3
    # outputs that hit every responsible prediction's target: each decodes to its instance's box
    raw = targets.copy()
    stretched = np.clip((targets[..., 1:3] + 0.5) / 2, 1e-6, 1 - 1e-6)  # cell_offset undone
    raw[..., 1:3] = np.log(stretched / (1 - stretched))
    np.testing.assert_allclose(cell_offset(1 / (1 + np.exp(-raw[..., 1:3])), 3)[targets[..., 0] > 0],
                               targets[..., 1:3][targets[..., 0] > 0], atol=1e-5)
    decoded = decode(raw, PRIORS, 8.0, cells=3)[0].reshape(8, 8, 2, 4)
    for (row, col, prior), (x, y) in responsible.items():
        instance = np.argmin(np.abs((boxes[:, :2] + boxes[:, 2:]) / 16 - [col + x, row + y]).sum(axis=1))
        np.testing.assert_allclose(decoded[row, col, prior], boxes[instance], atol=1e-3)
    iou = np.asarray(target_iou(raw, targets, PRIORS, 8.0, cells=3))
    np.testing.assert_allclose(iou[targets[..., 0] > 0], 1.0, rtol=1e-5)
    assert cell_offset(0.0, 3) == -0.5 and cell_offset(1.0, 3) == 1.5 and cell_offset(0.5, 3) == 0.5


def test_near_misses_by_hand():
    # zero outputs: every prediction is its prior centred on its cell; prior 8x8 at stride 8 fills the cell
    raw = np.zeros((4, 4, 1, 5), np.float32)
    boxes = np.array([[12, 8, 20, 16], [-1, -1, -1, -1]], np.int16)  # straddles cells (1, 1) and (1, 2)
    # each of the two cells' boxes overlaps it by 4 x 8 = 32 px: IoU 32 / (64 + 64 - 32) = 1/3
    np.testing.assert_allclose(box_iou(decode(raw, [[8.0, 8.0]], 8.0)[0][[5, 6]], boxes[:1]), [[1 / 3], [1 / 3]])
    near = np.asarray(jax.jit(near_misses, static_argnums=(3, 4))(raw, boxes, np.array([[8.0, 8.0]]), 8.0, 0.3))
    assert near.shape == (4, 4, 1) and near.sum() == 2 and near[1, 1, 0] == near[1, 2, 0] == 1
    assert np.asarray(near_misses(raw, boxes, np.array([[8.0, 8.0]]), 8.0, 0.5)).sum() == 0  # 1/3 is below 0.5


def test_target_iou_by_hand():
    # prior 8x8 at stride 8, zero outputs: the prediction is the whole cell (1 x 1 cells, centred)
    raw = np.zeros((3, 5), np.float32)
    targets = np.array([[1, 0.5, 0.5, np.log(2.0), 0.0],  # twice as wide, same centre: 1 / 2
                        [1, 0.0, 0.5, 0.0, 0.0],  # the same size, half a cell left: 0.5 / 1.5
                        [1, 0.5, 0.5, 0.0, 0.0]], np.float32)  # the prediction itself: 1
    np.testing.assert_allclose(target_iou(raw, targets, np.array([[8.0, 8.0]]), 8.0), [0.5, 1 / 3, 1.0], rtol=1e-6)
    raw[2, 3:] = np.log(0.5)  # a box half as wide and high inside the target's: 1/4
    assert float(target_iou(raw, targets, np.array([[8.0, 8.0]]), 8.0)[2]) == pytest.approx(0.25, rel=1e-5)


def test_generalized_target_iou_by_hand():
    priors = np.array([[8.0, 8.0]])
    raw = np.zeros((3, 5), np.float32)  # as above, the prediction is the whole cell
    raw[2, 3:] = np.log(0.25)  # a quarter-cell box in the cell's middle: [0.375, 0.625] both ways
    targets = np.array([[1, 0.5, 0.5, np.log(2.0), 0.0],  # encloses the prediction: GIoU = IoU = 1 / 2
                        [1, 0.0, 0.5, 0.0, 0.0],  # half a cell left: the hull is the union, 1 / 3
                        [1, 0.0, 0.5, np.log(0.25), np.log(0.25)]], np.float32)  # [-0.125, 0.125] x [0.375, 0.625]
    # the last two boxes do not touch: IoU 0; hull 0.75 x 0.25, union 2 x 0.0625: GIoU -(0.1875 - 0.125) / 0.1875
    giou = target_iou(raw, targets, priors, 8.0, generalized=True)
    np.testing.assert_allclose(giou, [0.5, 1 / 3, -1 / 3], rtol=1e-5)
    assert float(target_iou(raw, targets, priors, 8.0)[2]) == 0.0
    # only the generalized IoU tells the missing box which way to go: its centre leftwards (t_x down)
    grad_iou, grad_giou = (jax.grad(lambda r, g=g: target_iou(r, targets, priors, 8.0, generalized=g)[2])(raw)
                           for g in (False, True))
    assert not np.any(np.asarray(grad_iou)) and float(grad_giou[2, 1]) < 0


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 3, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_matching_and_ap_by_hand():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 31], [50, 50, 60, 60]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # the second box overlaps a true box already taken: a false positive
    assert match_detections(boxes, scores, truth, 0.5).tolist() == [True, False, True, False]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: interpolated 1 * 1/2 + 2/3 * 1/2
    assert detection_average_precision(scores, [True, False, True, False], 2) == pytest.approx(1 / 2 + 1 / 3)
    assert detection_average_precision(scores[:2], [True, True], 2) == 1.0
    assert detection_average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    # pooled over queries; a query for an absent object (no true boxes) only adds false positives
    perfect = box_metrics([(truth, np.array([0.9, 0.8]), truth)])
    assert perfect["ap50"] == 1.0 and perfect["ap50_95"] == 1.0
    absent = box_metrics([(truth, np.array([0.9, 0.8]), truth), (boxes[3:], np.array([0.95]), truth[:0])])
    assert absent["ap50"] == pytest.approx(2 / 3) and absent["num_detections"] == 3
    loose = box_metrics([(np.array([[0, 0, 10, 12]]), np.array([0.9]), truth[:1])])
    assert loose["ap50"] == 1.0 and loose["ap50_95"] == pytest.approx(0.7)  # IoU 10/12 passes 0.50..0.80


def test_pyramid_tiles_by_hand():
    from inference import pyramid_tiles

    assert pyramid_tiles(32, 32) == [(0, 0, 32)]
    assert pyramid_tiles(64, 32) == [(0, 0, 24), (16, 24, 40), (32, 40, 64)]  # 3 tiles: 2 would overlap by none
    assert pyramid_tiles(544, 320) == [(0, 0, 272), (224, 272, 544)]
    for size in (33, 100, 435, 1000):  # the cores cut [0, size) once, each inside its tile
        tiles = pyramid_tiles(size, 32)
        assert [lo for _, lo, _ in tiles[1:]] == [hi for _, _, hi in tiles[:-1]] and tiles[-1][2] == size
        assert all(start <= lo < hi <= start + 32 for start, lo, hi in tiles)


def fake_model(config, find, embed=None):
    """A model as inference.Inference calls one (models.Run, runtime.Exported): a config,
    find(scenes, embeddings) and embed(views, backgrounds)."""
    return types.SimpleNamespace(config=config, find=find, embed=embed)


def test_answer_embeds_each_querys_views_then_finds_them_in_its_scene():
    """Two scenes of three queries of two views each: embed sees the six queries' views, (6, 2, h, w, 4)
    and (6, 2, 3); find sees the scenes with the embeddings back in (2, 3, E) order."""
    config = ModelConfig(scene_size=32, priors=((8.0, 8.0),))
    anchors = np.zeros((2, 3, 2, 4, 4, 4), np.uint8)
    anchors[..., 0] = np.arange(6).reshape(2, 3, 1, 1, 1)  # each query's views marked by its index
    backgrounds = np.full((2, 3, 2, 3), 128, np.uint8)

    def embed(views, view_backgrounds):
        assert views.shape == (6, 2, 4, 4, 4) and view_backgrounds.shape == (6, 2, 3)
        return np.stack([np.full(5, v[0, 0, 0, 0], np.float32) for v in views])  # (6, E=5)

    def find(scenes, embeddings):
        np.testing.assert_array_equal(embeddings[..., 0], [[0, 1, 2], [3, 4, 5]])
        return np.full((len(scenes), 3, 4, 4), 0.5, np.float32), np.zeros((len(scenes), 3, 4, 4, 1, 5), np.float32)

    batch = {"anchors": anchors, "anchor_backgrounds": backgrounds, "scene": np.zeros((2, 32, 32, 3), np.uint8)}
    probs, found = Inference(box_score="objectness").answer(fake_model(config, find, embed))(batch)
    assert probs.shape == (2, 3, 4, 4) and len(found) == 2 and len(found[0]) == 3


def test_bilinear_enlargement_matches_jaxs_linear_resize():
    """The pyramid's numpy enlargement (no JAX at run time) against jax.image.resize's "linear", rounded:
    equal at whole scales, and at others one level off where float rounding lands a value on the other
    side of a half (0.3% of the pixels at 1.7x)."""
    from inference import enlarged_bilinear

    images = np.random.default_rng(0).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    for size in (40, 34, 80):
        ours = enlarged_bilinear(images, size).astype(int)
        theirs = np.clip(np.round(np.asarray(jax.image.resize(images.astype(np.float32), (2, size, size, 3),
                                                              "linear"))), 0, 255).astype(int)
        assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1
        assert np.mean(ours != theirs) < (1e-2 if size % 20 else 1e-9)


def test_a_pyramid_adds_the_enlarged_scenes_small_boxes_in_the_scenes_own_pixels():
    """A fake model that, on any 32x32 scene, finds an 8x8 box centred at (20, 12) and a 16x16 one at
    (4, 28). Enlarged 2x (64x64, three tiles a side: starts 0, 16, 32) the 8x8 box, 4x4 in the scene's
    pixels, is smaller than the smallest prior (8x8) and comes back once per tile, at ((x + 20) / 2,
    (y + 12) / 2); the 16x16 one does not: the scale-1 pass answers for it."""
    config = ModelConfig(scene_size=32, priors=((8.0, 8.0), (16.0, 16.0)))  # grid 4, stride 8

    def find(scenes, embeddings):
        assert scenes.shape == (1, 32, 32, 3) and embeddings == "the references' embeddings"
        raw = np.zeros((1, 1, 4, 4, 2, 5), np.float32)
        raw[..., 0] = -30.0
        raw[0, 0, 1, 2, 0, 0] = 30.0  # row 1, column 2, the 8x8 prior: centre (2.5, 1.5) cells
        raw[0, 0, 3, 0, 1, 0] = 30.0  # row 3, column 0, the 16x16 prior: centre (0.5, 3.5) cells
        return np.ones((1, 1, 4, 4), np.float32), raw

    probs, found = Inference(box_score="objectness", pyramid_scales=(2.0,)).find(
        fake_model(config, find), np.zeros((1, 32, 32, 3), np.uint8), "the references' embeddings")
    boxes, scores = found[0][0]
    high = boxes[scores > 0.5]
    own = [[16, 8, 24, 16], [-4, 20, 12, 36]]
    enlarged = [[(x + 20) / 2 - 2, (y + 12) / 2 - 2, (x + 20) / 2 + 2, (y + 12) / 2 + 2]
                for y in (0, 16, 32) for x in (0, 16, 32)]
    np.testing.assert_allclose(high, own + enlarged)
    # every scale-1 candidate; after them the 8x8 prior's whose centre is in its tile's core: centres
    # at 4, 12, 20, 28 in a tile, in the cores [0, 24), [24, 40), [40, 64) 3 + 2 + 3 a side
    assert len(boxes) == 4 * 4 * 2 + 8 * 8
    np.testing.assert_array_equal(probs, 1.0)


def test_median_gain_by_hand():
    from inference import median_gain

    found = [(None, np.array([0.5, 0.3])), (None, np.array([0.2])), (None, np.zeros(0))]
    added = [(None, np.array([0.6, 0.55])), (None, np.array([0.1])), (None, np.array([0.3]))]
    assert median_gain(found, added) == pytest.approx(0.1)  # rises 0.1, 0 (none: 0.1 < 0.2), 0.3


def test_an_automatic_pyramid_adds_its_boxes_only_where_they_raise_the_median_best_score():
    """Two scenes whose only query's best box scores 0.9 and 0.2; every enlarged tile answers a 4x4
    box (2x2 in the scene's pixels, under the smallest prior) at 0.6: it rises only in the second."""
    from inference import with_pyramid

    config = ModelConfig(scene_size=32, priors=((8.0, 8.0), (16.0, 16.0)))
    found = [[(np.array([[0.0, 0.0, 16.0, 16.0]]), np.array([score]))] for score in (0.9, 0.2)]

    def answer(tiles):
        assert tiles.shape == (2, 32, 32, 3)
        return [[(np.array([[10.0, 10.0, 14.0, 14.0]]), np.array([0.6]))] for _ in tiles]

    scenes = np.zeros((2, 32, 32, 3), np.uint8)
    always = with_pyramid(found, scenes, (2.0,), answer, config)
    auto = with_pyramid(found, scenes, (2.0,), answer, config, min_gain=0.015)
    assert [len(s) for (_, s), in always] == [1 + 9, 1 + 9]  # one box from each of the 3 x 3 tiles
    np.testing.assert_array_equal(auto[0][0][0], found[0][0][0])
    np.testing.assert_array_equal(auto[1][0][0], always[1][0][0])
    np.testing.assert_allclose(always[1][0][0][1], [5, 5, 7, 7])  # the first tile's, halved


def test_flips_average_the_mirrored_passes_mirrored_back():
    """A fake model that finds an 8x8 box centred on a scene's one bright pixel, (21, 10): centre (21.5,
    10.5), cell column 2, row 1 (stride 8), offsets 0.6875, 0.3125; mirrored left-right the pixel is at
    (10, 10), upside down at (21, 21). Each pass, mirrored back, finds the same box, so their mean does
    too, and only there. Its P(object) ignores the scene, (4 r + c) / 16 at row r, column c: the mean of
    it and its two mirror images is (4 r + c + 4 r + 3 - c + 4 (3 - r) + c) / 48 = (4 r + c + 15) / 48."""
    config = ModelConfig(scene_size=32, priors=((8.0, 8.0),))  # grid 4, stride 8
    scenes_seen = []

    def find(scenes, embeddings):
        scenes_seen.append(scenes)
        y, x = np.argwhere(scenes[0, ..., 0] > 0)[0]
        (row, oy), (col, ox) = (divmod((v + 0.5) / 8, 1) for v in (y, x))
        raw = np.zeros((1, 1, 4, 4, 1, 5), np.float32)
        raw[..., 0] = -30.0
        raw[0, 0, int(row), int(col), 0, :3] = 30.0, np.log(ox / (1 - ox)), np.log(oy / (1 - oy))
        return np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 16, raw

    scene = np.zeros((1, 32, 32, 3), np.uint8)
    scene[0, 10, 21] = 255
    probs, found = Inference(box_score="objectness", flips=True).find(fake_model(config, find), scene, None)
    assert [tuple(np.argwhere(s[0, ..., 0])[0]) for s in scenes_seen] == [(10, 21), (10, 10), (21, 21)]
    boxes, scores = found[0][0]
    np.testing.assert_allclose(boxes[scores > 0.5], [[17.5, 6.5, 25.5, 14.5]], atol=1e-4)
    rows, cols = np.mgrid[:4, :4]
    np.testing.assert_allclose(probs[0, 0], (4 * rows + cols + 15) / 48, rtol=1e-6)


def test_with_flips_the_pyramids_tiles_are_answered_with_flips_too(monkeypatch):
    """A fake model whose P(object) is 1 on a scene as given and 0 on one mirrored (marked by a white
    top-left pixel, which a left-right or upside-down flip moves): flip-averaged, every cell is 1/3,
    and so must be the score of every box the pyramid adds, or the tiles' boxes would outscore the
    scene's own by a factor of 3 and the automatic pyramid's gate would compare unlike scores."""
    import inference

    config = ModelConfig(scene_size=32, priors=((8.0, 8.0),))

    def find(scenes, embeddings):
        as_given = (scenes[:, 0, 0, 0] == 255).astype(np.float32)[:, None, None, None]  # (B, 1, 1, 1)
        raw = np.zeros((len(scenes), 1, 4, 4, 1, 5), np.float32)
        raw[..., 0] = 30.0
        return np.ones((len(scenes), 1, 4, 4), np.float32) * as_given, raw

    monkeypatch.setattr(inference, "pyramid_boxes", lambda scenes, scales, answer, config: answer(scenes))
    scenes = np.zeros((1, 32, 32, 3), np.uint8)
    scenes[:, 0, 0] = 255
    flips = inference.Inference(box_score="geometric", flips=True, pyramid_scales=(2.0,))
    probs, found = flips.find(fake_model(config, find), scenes, "embeddings")
    np.testing.assert_allclose(probs, 1 / 3)
    boxes, scores = found[0][0]
    assert len(scores) == 2 * 16  # the scene's 16 boxes and the stand-in pyramid's 16
    np.testing.assert_allclose(scores, np.sqrt(1 / 3), rtol=1e-5)  # geometric: sqrt(objectness 1 x P 1/3)
