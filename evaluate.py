"""One evaluator for every evaluation: validation during training, the zero-shot test, the
baselines and the ablations ask the same queries and score them with the same functions.

    run, split = load("pretrained", "data/small", "test")
    inference = Inference.for_run("pretrained")
    pred = evaluate(split, inference.answer(run), num_views=4, num_absent=4)
    figures = {**cell_figures(pred), **box_figures(pred, inference.threshold)}

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
import math
import os
import re
import time

import numpy as np
from tqdm import tqdm

from boxes import select, visible
from data import SPLITS, EpisodeLoader, SceneCrops, Split
from inference import FALSE_ALARM_BUDGET, INFERENCE_KEYS, NMS_IOU, Inference
from metrics import average_precision, box_metrics, match_detections, pixel_metrics, recall_at_1
from models import check_scene_size, load_run
from render import object_family
from util import GREY, non_negative_int, unit_interval

OPERATING_THRESHOLDS = tuple(float(round(t, 2)) for t in np.arange(0.05, 0.951, 0.05))
MIN_SCORE = 0.01  # lowest box score kept for AP
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


def evaluation_parser(description, out_dir_help=None, run_dir_help="a finished run of train.py (v3_train.sh)",
                      split=True):
    """An argparse parser with the flags every evaluation entry point takes (test, baselines, ablations,
    experiments): the run, the data, the split (unless split is False: one that evaluates several),
    the queries, and inference.Inference's flags; --out-dir where out_dir_help says what it is."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained", help=run_dir_help)
    parser.add_argument("--data-dir", default="data/small", help="made by generate_split_chunk_data.sh")
    if split:
        parser.add_argument("--split", choices=SPLITS, default="test",
                            help="the robustness splits (data.SPLITS): the test objects under conditions outside "
                            "the training ranges; train: the objects trained on, for the seen-versus-unseen gap")
    if out_dir_help:
        parser.add_argument("--out-dir", help=out_dir_help)
    parser.add_argument("--absent-queries", type=non_negative_int, default=4,
                        help="K: objects NOT in the scene queried per scene")
    parser.add_argument("--min-score", type=unit_interval, default=MIN_SCORE, help="lowest box score kept for AP")
    return Inference.add_flags(parser)


def load(run_dir, data_dir, split_name):
    """A finished run and the split it is evaluated on -> (models.Run, data.Split); a DataError if
    they do not fit together."""
    run = load_run(run_dir)
    split = Split(data_dir, split_name)
    check_scene_size(split, run.config)
    return run, split


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


def box_queries(pred, where=None):
    """-> (present, absent): (boxes, scores, visible true boxes) of each query's detections; where
    (S, Q) bool: only those queries."""
    present, absent = [], []
    for s, row in enumerate(pred.detections):
        for q, (boxes, scores) in enumerate(row):
            if where is None or where[s, q]:
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


def family_figures(pred, threshold):
    """Box AP50, and recall and false alarms per absent query at the threshold, of each object
    family's queries (render.object_family: blocks, everyday, procedural) -> {family: figures},
    empty where the predictions hold one family only."""
    families = np.vectorize(object_family)(pred.obj_ids)  # (S, Q) str
    if len(np.unique(families)) < 2:
        return {}
    out = {}
    for family in np.unique(families).tolist():
        present, absent = box_queries(pred, families == family)
        point = operating_points(present, absent, (threshold,))[str(threshold)]
        out[family] = {"box_ap50": box_metrics(present + absent)["ap50"], "box_recall": point["recall"],
                       "absent_false_positives_per_query": point["absent_false_positives_per_query"],
                       "present_queries": len(present), "absent_queries": len(absent)}
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
    """A model (inference.py's: models.Run or runtime.Exported) -> (queries, keys): every object's
    (K, E) mean embedding of its views [0, N) and of its views [N, 2N), on grey; None when the
    split has fewer than 2N views per object."""
    if 2 * num_views > split.views_per_object:
        return None
    views = np.stack([split.views(i)[:2 * num_views] for i in split.object_ids])  # (K, 2N, h, w, 4) uint8
    grey = np.full((*views.shape[:1], num_views, 3), GREY, dtype=np.uint8)  # (K, N, 3)
    return run.embed(views[:, :num_views], grey), run.embed(views[:, num_views:], grey)


def retrieval_recall(embeddings):
    """recall@1 of object_embeddings(): is each object's query nearest its own key? None without them."""
    return None if embeddings is None else recall_at_1(*embeddings)
