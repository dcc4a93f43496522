"""One evaluator for every evaluation: validation during training, the zero-shot test, the
baselines and the ablations ask the same queries and score them with the same functions.

    run, split = load("pretrained", "data/small", "test")
    pred = evaluate(split, model_answer(run.models, run.params, run.nt_params), num_views=4, num_absent=4)
    figures = {**cell_figures(pred), **box_figures(pred, OPERATING_THRESHOLD)}

A query is a scene, an object and N reference views of it. Episode i of an inference-mode
EpisodeLoader asks C objects present in one scene and K absent ones (empty targets); with C =
every object of a scene, episodes 0..S-1 show each scene once. An `answer(batch)` maps a batch
of episodes to per-cell scores and, per query, candidate boxes; `evaluate` batches, keeps the
candidates over `min_score` after NMS, and collects everything as `Predictions`.
"""

import argparse
import contextlib
import dataclasses
import io
import itertools
import math
import os
import re
import time

import jax
import numpy as np
from tqdm import tqdm

from boxes import decode, select, visible
from data import GREY, SPLITS, DataError, EpisodeLoader, SceneCrops, Split, read_json, write_json_atomic
from metrics import average_precision, box_metrics, match_detections, pixel_metrics, recall_at_1
from models import INFERENCE_KEYS, check_scene_size, embed_objects, find_in_scenes, infer_batch, load_run
from util import non_negative_int, unit_interval

OPERATING_THRESHOLD = 0.2  # box score a detection is reported at by a run that has not chosen its own
OPERATING_POINT_FILE = "operating_point.json"  # in a run dir: its threshold, chosen on validation by test.py
OPERATING_THRESHOLDS = tuple(float(round(t, 2)) for t in np.arange(0.05, 0.951, 0.05))
MIN_SCORE = 0.01  # lowest box score kept for AP
NMS_IOU = 0.5
FALSE_ALARM_BUDGET = 0.2  # false alarms per absent query a run operates within: "not here" holds for 4 in 5
# The test-time pyramid (with_pyramid) for cameras farther than training's: its scale, chosen on
# validation_shift among 1.4, 1.7, 2 and 2.4; and --pyramid-auto's gate, the rise in a scene's median
# best score above which a scene takes its boxes, chosen on validation + validation_shift with
# pretrained/'s scores, presence gate included: a run that scores its boxes otherwise gains otherwise
# (docs/pyramid_gate.py; docs/results.md, Robustness)
PYRAMID_SCALES = (2.0,)
PYRAMID_MIN_GAIN = 0.06
MAX_PYRAMID_SCALE, MAX_PYRAMID_LEVELS = 4.0, 3  # bounds on what a user may ask of it
EPISODE_KEYS = (*INFERENCE_KEYS, "masks", "obj_ids", "boxes")
TEST_MARKER = ".made-by-yolz-test"  # in every dir test.py writes
TEST_OUTPUTS = frozenset({TEST_MARKER, "metrics.json", "pr_curve.png", "neighbours.png", "pairs", "index.html",
                          "coco_ground_truth.json", "coco_detections.json"})
PAIR_PICTURE = re.compile(r"scene_\d+\.obj_\d+\.[\w.]+\.png")


def not_test_outputs(out_dir):
    """The entries of an evaluation dir that test.py does not write (pairs/' included), sorted: the
    user's, which replacing the dir would lose."""
    names = sorted(os.listdir(out_dir))
    pairs = os.path.join(out_dir, "pairs")
    foreign = [n for n in names if n not in TEST_OUTPUTS or (n == "pairs" and not os.path.isdir(pairs))]
    if os.path.isdir(pairs) and not os.path.islink(pairs):
        foreign += [f"pairs/{n}" for n in sorted(os.listdir(pairs)) if not PAIR_PICTURE.fullmatch(n)]
    return foreign


def written_by_test(out_dir):
    """Whether a dir holds test.py's output and nothing else, by the names test.py gives (runs made
    before TEST_MARKER existed hold the rest of its output without it)."""
    return os.path.isdir(out_dir) and not os.path.islink(out_dir) and not not_test_outputs(out_dir) \
        and bool(os.listdir(out_dir))


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Every query's answer and truth; S episodes of Q = C present + K absent queries."""

    probs: np.ndarray  # (S, Q, G, G) float32 scores in [0, 1]
    masks: np.ndarray  # (S, Q, G, G) uint8 {0, 1} targets (all 0 for absent queries)
    obj_ids: np.ndarray  # (S, Q) int
    boxes: np.ndarray  # (S, Q, I, 4) int16 true pixel boxes, -1 rows hidden
    detections: list  # [S][Q] of ((n, 4) boxes, (n,) scores), best first; [] without boxes
    num_present: int  # C: queries [0, C) present, [C, Q) absent
    scene_index: np.ndarray  # (S,) the split's scene each episode shows
    loader: EpisodeLoader  # loader.episode(s) is episode s again (for pictures)
    scenes_per_s: float  # answering, loading and box selection; the first (compiling) call left out
    compile_s: float  # the first call


def evaluation_parser(description, out_dir_help, run_dir_help="a finished run of train.py (v3_train.sh)"):
    """An argparse parser with the flags every evaluation entry point takes (test, baselines, ablations)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained", help=run_dir_help)
    parser.add_argument("--data-dir", default="data/small", help="made by generate_split_chunk_data.sh")
    parser.add_argument("--split", choices=tuple(s for s in SPLITS if s != "train"), default="test",
                        help="test_shift, validation_shift: the test or validation objects seen from cameras outside "
                        "the training ranges")
    parser.add_argument("--out-dir", help=out_dir_help)
    parser.add_argument("--absent-queries", type=non_negative_int, default=4,
                        help="K: objects NOT in the scene queried per scene")
    parser.add_argument("--min-score", type=unit_interval, default=MIN_SCORE, help="lowest box score kept for AP")
    parser.add_argument("--nms-iou", type=unit_interval, default=NMS_IOU, help="non-max suppression IoU")
    return parser


def load(run_dir, data_dir, split_name):
    """A finished run and the split it is evaluated on -> (models.Run, data.Split); a DataError if
    they do not fit together."""
    run = load_run(run_dir)
    split = Split(data_dir, split_name)
    check_scene_size(split, run.config)
    return run, split


def pyramid_tiles(size, tile):
    """Tiles of side `tile` across [0, size), overlapping by at least a quarter -> [(start, lo, hi)]:
    each tile answers for the boxes centred in its [lo, hi), and these cut [0, size) once."""
    n = 1 if size <= tile else int(np.ceil((size - tile) / (0.75 * tile))) + 1
    starts = np.linspace(0, size - tile, n).round().astype(int)
    cuts = [0, *((starts[:-1] + tile + starts[1:]) // 2), size]
    return [(int(start), int(cuts[i]), int(cuts[i + 1])) for i, start in enumerate(starts)]


def from_tile(boxes, core, max_side):
    """(n, 4) boxes in an enlarged scene's pixels -> (n,) bool: centred in a tile's core (x_lo, x_hi,
    y_lo, y_hi: pyramid_tiles) and with a side (the square root of the area) under max_side."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))
    return (cx >= core[0]) & (cx < core[1]) & (cy >= core[2]) & (cy < core[3]) & (side < max_side)


def decoded(config, raw, probs):
    """(B, Q, G, G, A, 5) raw box outputs and (B, Q, G, G) P(object) -> [B][Q] of (all decoded boxes,
    scores), scored as config.box_score says, times the query's peak P(object) to config.presence_power."""
    geometric = config.box_score == "geometric"

    def query_boxes(r, p):
        boxes, scores = decode(r, config.priors, config.stride, cells=config.box_cells,
                               cell_probs=p if geometric else None)
        return boxes, scores * float(np.max(p)) ** config.presence_power

    return [[query_boxes(r, p) for r, p in zip(scene_raw, scene_probs)] for scene_raw, scene_probs in zip(raw, probs)]


def pyramid_boxes(scenes, scales, answer, config):
    """The boxes a test-time scene pyramid adds to the (B, H, H, 3) uint8 scenes -> [B][Q] of (boxes,
    scores) in the scenes' pixels. answer((B, H, H, 3) tiles) -> [B][Q] of (boxes, scores) in the tiles'
    pixels. Scenes enlarged by each of `scales` (> 1) are answered tile by tile at the model's own size
    (pyramid_tiles) and add only boxes smaller than the smallest prior at the scene's own size: as SNIP
    (Singh & Davis 2018) has each scale answer only for the sizes the model learned, so that a scene
    seen from farther than in training finds its small objects without the enlarged large ones
    turning into false alarms."""
    smallest = float(np.sqrt(np.min(np.prod(config.priors, axis=1))))
    added = None
    h = scenes.shape[1]
    for scale in scales:
        size = round(h * scale)
        enlarged = jax.image.resize(scenes.astype(np.float32), (len(scenes), size, size, 3), "linear")
        enlarged = np.clip(np.round(np.asarray(enlarged)), 0, 255).astype(np.uint8)
        for (y, *rows), (x, *cols) in itertools.product(pyramid_tiles(size, h), repeat=2):
            tile_found = answer(enlarged[:, y:y + h, x:x + h])
            added = added or [[([], []) for _ in scene] for scene in tile_found]
            for scene, tile_scene in zip(added, tile_found):
                for (all_boxes, all_scores), (boxes, scores) in zip(scene, tile_scene):
                    boxes = boxes + [x, y, x, y]
                    keep = from_tile(boxes, (*cols, *rows), smallest * scale)
                    all_boxes.append(boxes[keep] / scale)
                    all_scores.append(scores[keep])
    return [[(np.concatenate(boxes).reshape(-1, 4), np.concatenate(scores)) for boxes, scores in scene]
            for scene in added]


def median_gain(found, added):
    """A scene's [Q] of (boxes, scores) and the [Q] a pyramid adds (pyramid_boxes) -> how much the
    pyramid raises the best score of the scene's median query (0 where it finds nothing better)."""
    def best(scores):
        return float(np.max(scores)) if len(scores) else 0.0
    return float(np.median([max(0.0, best(a) - best(f)) for (_, f), (_, a) in zip(found, added)]))


def with_pyramid(found, scenes, scales, answer, config, min_gain=None):
    """found, [B][Q] of (boxes, scores) in the (B, H, H, 3) uint8 scenes, with the boxes of a test-time
    scene pyramid added (pyramid_boxes; its answer the same). min_gain: only in scenes where they raise
    the median query's best score by more than that (median_gain: a scene whose objects look smaller
    than any in training, one answer for all its queries; None: in every scene)."""
    added = pyramid_boxes(scenes, scales, answer, config)
    return [[(np.concatenate([b, more_b]), np.concatenate([s, more_s]))
             for (b, s), (more_b, more_s) in zip(scene, more)]
            if min_gain is None or median_gain(scene, more) > min_gain else scene
            for scene, more in zip(found, added)]


def unmirrored(probs, raw, axis):
    """(B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs (or None) of scenes mirrored along
    their axis 1 (upside down) or 2 (left-right) -> the scenes' own: the cells mirrored back, and each
    centre's offset within its cell too, o -> 1 - o, whose logit is the negative (boxes.cell_offset is
    symmetric about 1/2)."""
    probs = np.flip(probs, axis + 1)
    if raw is None:
        return probs, None
    raw = np.flip(raw, axis + 1).copy()
    raw[..., 3 - axis] *= -1  # axis 2 (x): t_x, channel 1; axis 1 (y): t_y, channel 2
    return probs, raw


def averaged_over_flips(probs, raw, scenes, answer):
    """Test-time flips: the (B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs (or None) of
    the (B, H, W, 3) uint8 scenes averaged with those of the scenes mirrored left-right and upside
    down, mirrored back. answer(scenes) -> their (P(object), raw outputs)."""
    outputs = [(np.asarray(probs), None if raw is None else np.asarray(raw))]
    for axis in (2, 1):
        mirrored_probs, mirrored_raw = answer(np.ascontiguousarray(np.flip(scenes, axis)))
        outputs.append(unmirrored(np.asarray(mirrored_probs), None if mirrored_raw is None
                                  else np.asarray(mirrored_raw), axis))
    return (np.mean([p for p, _ in outputs], axis=0),
            None if raw is None else np.mean([r for _, r in outputs], axis=0))


def check_pyramid_scales(scales):
    """A pyramid's scales as a tuple of floats, or a DataError unless there are at most
    MAX_PYRAMID_LEVELS of them, each from 1 to MAX_PYRAMID_SCALE: its work grows with the square of
    a scale (a scale of 4 answers 25 tiles)."""
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        scales = (float("nan"),)
    if len(scales) > MAX_PYRAMID_LEVELS or not all(1 <= s <= MAX_PYRAMID_SCALE for s in scales):
        given = f"{len(scales)} of them" if len(scales) > MAX_PYRAMID_LEVELS else ", ".join(f"{s:g}" for s in scales)
        raise DataError(f"pyramid scales (--pyramid-scales) {given}: give at most {MAX_PYRAMID_LEVELS} factors, each "
                        f"from 1 to {MAX_PYRAMID_SCALE:g} (2: a camera twice as far as in training)")
    return scales


def pyramid_setting(scales, auto):
    """--pyramid-scales and --pyramid-auto -> (the pyramid's scales, its min_gain for with_pyramid):
    auto without scales takes PYRAMID_SCALES, and gates them by PYRAMID_MIN_GAIN."""
    scales = check_pyramid_scales(scales) or (PYRAMID_SCALES if auto else ())
    return scales, PYRAMID_MIN_GAIN if auto else None


def model_answer(models, params, nt_params, pyramid_scales=(), flips=False, pyramid_min_gain=None):
    """The models' answer(batch) -> ((B, Q, G, G) P(object), [B][Q] of (all decoded boxes, scores) or
    None without a box head). flips: the outputs averaged over the scenes mirrored both ways
    (averaged_over_flips; 3 passes). pyramid_scales: factors > 1 of a test-time scene pyramid
    (with_pyramid) whose boxes are added, where pyramid_min_gain (None: everywhere) says; P(object)
    stays the scene's own."""
    def answer(batch):
        inputs = {k: batch[k] for k in INFERENCE_KEYS}
        probs, raw, objects = infer_batch(params, nt_params, inputs, models)
        if flips:
            probs, raw = averaged_over_flips(probs, raw, batch["scene"], lambda scenes: find_in_scenes(
                params, nt_params, scenes, objects, models))
        probs = np.asarray(probs)
        if raw is None:
            return probs, None
        found = decoded(models.config, np.asarray(raw), probs)
        if pyramid_scales:
            def answer_tiles(tiles):  # the references embedded once, above
                tile_probs, tile_raw = find_in_scenes(params, nt_params, tiles, objects, models)
                return decoded(models.config, np.asarray(tile_raw), np.asarray(tile_probs))
            found = with_pyramid(found, batch["scene"], pyramid_scales, answer_tiles, models.config,
                                 pyramid_min_gain)
        return probs, found

    return answer


def evaluate(split, answer, *, num_views, num_objects=None, num_absent=0, num_episodes=None, batch_size=8,
             background="grey", references="renders", seed=0, min_score=MIN_SCORE, nms_iou=NMS_IOU, desc=None):
    """Episodes 0..num_episodes-1 (default: one per scene) of C = num_objects (default: all of a
    scene's) present and K = num_absent absent queries, N = num_views reference views (rendered on
    `background`, or with references="crops" cut from the split's other scenes: data.SceneCrops),
    answered `batch_size` episodes at a time -> Predictions. A short last batch is padded with
    episode 0, so a jitted answer compiles once. desc: a progress bar's label."""
    crops = SceneCrops(split) if references == "crops" else None
    loader = EpisodeLoader(split, num_objects or split.objects_per_scene, num_views, seed, training=False,
                           num_absent=num_absent, positives=False, background=background, crops=crops)
    num = num_episodes or split.num_scenes

    def batch_at(start):
        episodes = [loader.episode(i if i < num else 0) for i in range(start, start + batch_size)]
        return {k: np.stack([e[k] for e in episodes]) for k in EPISODE_KEYS}

    started = time.perf_counter()
    answer(batch_at(0))
    compiled = time.perf_counter()
    probs, masks, obj_ids, true_boxes, found = [], [], [], [], []
    for start in tqdm(range(0, num, batch_size), desc=desc, unit="batch", dynamic_ncols=True, disable=desc is None):
        batch = batch_at(start)
        scores, candidates = answer(batch)
        probs.append(scores)
        masks.append(batch["masks"])
        obj_ids.append(batch["obj_ids"])
        true_boxes.append(batch["boxes"])
        if candidates is not None:
            found += [[select(b, s, min_score, nms_iou) for b, s in scene] for scene in candidates[:num - start]]
    return Predictions(probs=np.concatenate(probs)[:num], masks=np.concatenate(masks)[:num],
                       obj_ids=np.concatenate(obj_ids)[:num], boxes=np.concatenate(true_boxes)[:num],
                       detections=found, num_present=loader.num_objects,
                       scene_index=np.array([loader.scene_index(i) for i in range(num)]), loader=loader,
                       scenes_per_s=num / (time.perf_counter() - compiled), compile_s=compiled - started)


# ---------------------------------------------------------------------------------------------
# figures of Predictions


def cell_figures(pred, retrieval_recall=None):
    """The per-cell figures, pooled and per object, over the queries of objects present."""
    c = pred.num_present
    probs, masks, obj_ids = pred.probs[:, :c], pred.masks[:, :c], pred.obj_ids[:, :c]
    out = pixel_metrics(probs, masks)
    per_object = {}
    for obj_id in np.unique(obj_ids):
        where = obj_ids == obj_id  # (S, C) bool
        ap = average_precision(probs[where], masks[where])
        per_object[str(int(obj_id))] = ap if np.isfinite(ap) else None  # None: hidden in all its scenes
    finite = [v for v in per_object.values() if v is not None]
    out.update({"mean_per_object_average_precision": float(np.mean(finite)) if finite else float("nan"),
                "per_object_average_precision": per_object, "retrieval_recall@1": retrieval_recall,
                "num_scenes": int(len(probs)), "num_objects": int(len(per_object)),
                "num_pairs": int(probs.shape[0] * probs.shape[1])})
    return out


def box_queries(pred):
    """-> (present, absent): (boxes, scores, visible true boxes) of each query's detections."""
    present, absent = [], []
    for s, row in enumerate(pred.detections):
        for q, (boxes, scores) in enumerate(row):
            (present if q < pred.num_present else absent).append((boxes, scores, visible(pred.boxes[s, q])))
    return present, absent


def box_figures(pred, threshold):
    """Box AP over every query (absent ones add only false positives), AP of present queries alone,
    the operating point at the threshold (None: these predictions' own, budget_threshold), the
    operating points at OPERATING_THRESHOLDS, and the recall within FALSE_ALARM_BUDGET."""
    present, absent = box_queries(pred)
    recall, at = recall_at_false_alarms(present, absent)
    threshold = budget_threshold(at) if threshold is None else threshold
    point = operating_points(present, absent, (threshold,))[str(threshold)]
    out = {f"box_{k}": v for k, v in box_metrics(present + absent).items()}
    out.update({f"box_{k}_present_only": v for k, v in box_metrics(present).items() if k.startswith("ap")})
    out.update({"absent_queries": len(absent), "box_threshold": threshold, "box_precision": point["precision"],
                "box_recall": point["recall"], "box_f1": point["f1"],
                "absent_false_positives_per_query": point["absent_false_positives_per_query"],
                "box_recall_at_false_alarm_budget": recall, "box_threshold_at_false_alarm_budget": at,
                "box_operating_points": operating_points(present, absent)})
    return out


def budget_threshold(at):
    """recall_at_false_alarms()' threshold (detections scoring above it are kept) -> the operating
    threshold a run chooses on validation, which keeps scores at or above it: the next thousandth up."""
    return round(math.floor(at * 1000 + 1e-6) / 1000 + 0.001, 3)


def coco_json(pred):
    """Predictions as COCO: -> (ground truth dict, detections list). Each episode is an image, each
    object id a category; a present query's visible true boxes are its annotations; every query's
    detections are results, so an absent query's land on an image without that category (false
    positives, as COCO counts them). Image ids are episode + 1; boxes [x, y, width, height] in
    scene pixels, detections' to 0.01 pixel and their scores to 1e-5 (the detections of a 48-scene
    test: ~19 MB)."""
    images, annotations, results = [], [], []
    for s, row in enumerate(pred.detections):
        images.append({"id": s + 1, "width": int(pred.loader.split.manifest["arrays"]["rgb"]["shape"][1]),
                       "height": int(pred.loader.split.manifest["arrays"]["rgb"]["shape"][0]),
                       "scene_index": int(pred.scene_index[s])})
        for q, (boxes, scores) in enumerate(row):
            category = int(pred.obj_ids[s, q])
            if q < pred.num_present:
                for x0, y0, x1, y1 in visible(pred.boxes[s, q]).tolist():
                    annotations.append({"id": len(annotations) + 1, "image_id": s + 1, "category_id": category,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                        "iscrowd": 0})
            results += [{"image_id": s + 1, "category_id": category, "score": round(score, 5),
                         "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]}
                        for (x0, y0, x1, y1), score in zip(boxes.tolist(), scores.tolist())]
    categories = [{"id": int(i), "name": str(int(i))} for i in pred.loader.split.object_ids]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_figures(ground_truth, results):
    """pycocotools' bbox AP, AP50, AP75 (means over categories, 101 recall points, at most 100
    detections per image and category) of coco_json()'s output."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        if not results:
            return {"coco_ap": 0.0, "coco_ap50": 0.0, "coco_ap75": 0.0}
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"coco_ap": float(evaluation.stats[0]), "coco_ap50": float(evaluation.stats[1]),
            "coco_ap75": float(evaluation.stats[2])}


def best_operating_point(points):
    """box_figures()'s operating points -> {"threshold", "precision", "recall", "f1",
    "absent_false_positives_per_query"} where the box F1 (absent queries' detections counted as
    false) is highest; the lower threshold on a tie."""
    threshold, best = max(points.items(), key=lambda item: (item[1]["f1"], -float(item[0])))
    return {"threshold": float(threshold), **best}


def read_operating_point(run_dir):
    """RUN_DIR/operating_point.json checked ({} before test.py has chosen one): a DataError naming
    the file unless it is an object whose threshold, and its "flips" object's, is a number from 0 to 1."""
    path = os.path.join(run_dir, OPERATING_POINT_FILE)
    if not os.path.exists(path):
        return {}
    point = read_json(path)
    fix = f"restore it, or delete it and let python test.py --run-dir {run_dir} --split validation choose again"
    if not isinstance(point, dict) or not isinstance(point.get("flips", {}), dict):
        raise DataError(f"{path} is not an operating point (an object, with \"flips\" one too): {fix}")
    for where in (point, point.get("flips", {})):
        threshold = where.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0 <= threshold <= 1):
            raise DataError(f"{path}: threshold {threshold!r} is not a number from 0 to 1: {fix}")
    return point


def stored_threshold(run_dir, flips=False):
    """The operating threshold a run chose on its validation split (flips: for answers averaged over
    mirror images, model_answer's flips), or None before test.py has."""
    point = read_operating_point(run_dir)
    return (point.get("flips", {}) if flips else point).get("threshold")


def write_operating_point(run_dir, point, flips=False):
    """Stores an operating point chosen on validation in RUN_DIR/operating_point.json: at the top
    level, or with flips under "flips"; the other one is kept."""
    stored = read_operating_point(run_dir)
    if flips:
        stored = {**stored, "flips": point}
    else:
        stored = {**point, **({"flips": stored["flips"]} if "flips" in stored else {})}
    write_json_atomic(os.path.join(run_dir, OPERATING_POINT_FILE), stored)


def false_positives_per_query(absent_scores, threshold):
    """Mean number of an absent object's detections scoring at least the threshold (all are false)."""
    return float(np.mean([np.sum(sc >= threshold) for sc in absent_scores])) if absent_scores else float("nan")


def operating_points(present, absent, thresholds=OPERATING_THRESHOLDS):
    """Box precision, recall and F1 at IoU 0.5 (absent queries' detections counted) and false
    positives per absent query, at each score threshold: where to operate."""
    scores = np.concatenate([sc for _, sc, _ in present + absent])
    hits = np.concatenate([match_detections(b, sc, tb, 0.5) for b, sc, tb in present + absent])
    num_true = sum(len(tb) for _, _, tb in present)
    points = {}
    for t in thresholds:
        kept = scores >= t
        tp = int(np.sum(hits & kept))
        precision, recall = tp / max(int(kept.sum()), 1), tp / max(num_true, 1)
        points[str(t)] = {"precision": precision, "recall": recall,
                          "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                          "absent_false_positives_per_query": false_positives_per_query([sc for _, sc, _ in absent], t)}
    return points


def recall_at_false_alarms(present, absent, per_query=FALSE_ALARM_BUDGET):
    """Box recall at IoU 0.5 at the lowest score threshold that keeps the absent queries' detections
    (all false) to at most `per_query` per absent query, between OPERATING_THRESHOLDS' steps -> (recall,
    threshold: detections scoring above it are kept; 0.0 where every detection fits the budget)."""
    allowed = int(np.floor(per_query * len(absent) + 1e-9))
    absent_scores = np.sort(np.concatenate([sc for _, sc, _ in absent] or [np.zeros(0)]))[::-1]
    threshold = float(absent_scores[allowed]) if allowed < len(absent_scores) else 0.0
    scores = np.concatenate([sc for _, sc, _ in present] or [np.zeros(0)])
    hits = np.concatenate([match_detections(b, sc, tb, 0.5) for b, sc, tb in present] or [np.zeros(0, bool)])
    num_true = sum(len(tb) for _, _, tb in present)
    return float(np.sum(hits & (scores > threshold)) / max(num_true, 1)), threshold


def object_embeddings(split, run, num_views):
    """-> (queries, keys): every object's (K, E) mean embedding of its views [0, N) and of its views
    [N, 2N), on grey; None when the split has fewer than 2N views per object."""
    if 2 * num_views > split.views_per_object:
        return None
    views = np.stack([split.views(i)[:2 * num_views] for i in split.object_ids])  # (K, 2N, h, w, 4) uint8
    grey = np.full((*views.shape[:1], num_views, 3), GREY, dtype=np.uint8)  # (K, N, 3)
    queries = embed_objects(run.params, run.nt_params, views[:, :num_views], grey, run.models)
    keys = embed_objects(run.params, run.nt_params, views[:, num_views:], grey, run.models)
    return np.asarray(queries), np.asarray(keys)


def retrieval_recall(embeddings):
    """recall@1 of object_embeddings(): is each object's query nearest its own key? None without them."""
    return None if embeddings is None else recall_at_1(*embeddings)
