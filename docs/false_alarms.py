# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/false_alarms.py [RUN_DIR] [SPLIT] (~2 min on 2 cores).
"""Where a run's false detections land, at its operating threshold: on another object of the
scene (IoU >= 0.5 with one of its boxes), partly on another (0.1-0.5), on the queried object but
badly placed (IoU 0.1-0.5 with one of its own boxes), or elsewhere; then the box figures at
evaluate.NMS_IOU (0.5) and two lower NMS IoUs: do the badly placed boxes survive NMS beside good ones?"""
import sys

import numpy as np

from boxes import box_iou, visible
from evaluate import NMS_IOU, OPERATING_THRESHOLD, box_figures, evaluate, load, model_answer, stored_threshold

run_dir = sys.argv[1] if len(sys.argv) > 1 else "pretrained"
split_name = sys.argv[2] if len(sys.argv) > 2 else "test"
run, split = load(run_dir, "data/small", split_name)
answer = model_answer(run.models, run.params, run.nt_params)
threshold = stored_threshold(run_dir) or OPERATING_THRESHOLD


def best_overlaps(boxes, truths):
    """(n, 4) detections, (m, 4) true boxes -> ((n,) each detection's best IoU, (n,) with which)."""
    if not len(truths):
        return np.zeros(len(boxes)), np.zeros(len(boxes), int)
    iou = box_iou(boxes, truths)
    return iou.max(axis=1), iou.argmax(axis=1)


pred = evaluate(split, answer, num_views=4, num_absent=4)
kinds = ("on another object", "partly on another", "own object, badly placed", "elsewhere")
counts = {"present": dict.fromkeys(kinds, 0), "absent": dict.fromkeys(kinds, 0)}
hits, beside_a_hit = 0, 0  # beside_a_hit: badly placed boxes whose instance also has a good box
for s, row in enumerate(pred.detections):
    truths = [visible(pred.boxes[s, q]) for q in range(pred.num_present)]
    for q, (boxes, scores) in enumerate(row):
        kept = boxes[scores >= threshold]
        own = truths[q] if q < pred.num_present else np.zeros((0, 4))
        others = np.concatenate([t for i, t in enumerate(truths) if i != q] or [np.zeros((0, 4))])
        on_own, instance = best_overlaps(kept, own)
        on_other, _ = best_overlaps(kept, others)
        good = on_own >= 0.5
        hits += int(good.sum())
        found = set(instance[good].tolist())
        for own_iou, which, other_iou in zip(on_own[~good], instance[~good], on_other[~good]):
            if other_iou >= 0.5:
                kind = kinds[0]
            elif own_iou >= 0.1:
                kind = kinds[2]
                beside_a_hit += int(which) in found
            else:
                kind = kinds[1] if other_iou >= 0.1 else kinds[3]
            counts["present" if q < pred.num_present else "absent"][kind] += 1
print(f"{run_dir}, {split_name}, score >= {threshold}: {hits} detections at IoU >= 0.5 with the queried object")
for query, row in counts.items():
    total = sum(row.values())
    print(f"  {query} queries' false detections ({total}): "
          + ", ".join(f"{kind} {n} ({n / max(total, 1):.0%})" for kind, n in row.items()))
print(f"  of the badly placed, {beside_a_hit} beside a good box of the same instance")
for nms in (NMS_IOU, 0.4, 0.3):
    figures = box_figures(pred if nms == NMS_IOU else evaluate(split, answer, num_views=4, num_absent=4, nms_iou=nms),
                          threshold)
    print(f"  NMS IoU {nms}: box AP50 {figures['box_ap50']:.3f}, AP[.50:.95] {figures['box_ap50_95']:.3f}, "
          f"false positives per absent query {figures['absent_false_positives_per_query']:.2f}", flush=True)
