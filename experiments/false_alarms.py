"""Where a run's false detections land, at its operating threshold: on another object of the
scene (IoU >= 0.5 with one of its boxes), partly on another (0.1-0.5), on the queried object but
badly placed (IoU 0.1-0.5 with one of its own boxes), or elsewhere; then the box figures at the
run's NMS IoU and two lower ones: do the badly placed boxes survive NMS beside good ones?

    python -m experiments.false_alarms --split test --nms 0.5 0.4 0.3     # ~2 min on 2 cores
"""

import dataclasses

import numpy as np

from boxes import box_iou, visible
from evaluate import box_figures, evaluate, evaluation_parser, load
from inference import OPERATING_THRESHOLD, Inference
from models import enable_compilation_cache
from util import exits_in_one_line, unit_interval


def best_overlaps(boxes, truths):
    """(n, 4) detections, (m, 4) true boxes -> ((n,) each detection's best IoU, (n,) with which)."""
    if not len(truths):
        return np.zeros(len(boxes)), np.zeros(len(boxes), int)
    iou = box_iou(boxes, truths)
    return iou.max(axis=1), iou.argmax(axis=1)


def false_detections(pred, threshold):
    """Predictions' detections scoring at least the threshold -> (hits at IoU 0.5, {"present"/"absent":
    {kind: count}} of the false ones, badly placed boxes beside a good one of the same instance)."""
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
    return hits, counts, beside_a_hit


def main(argv=None):
    parser = evaluation_parser(__doc__)
    parser.add_argument("--nms", type=unit_interval, nargs="+", default=[0.5, 0.4, 0.3], help="NMS IoUs compared")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
        run, split = load(args.run_dir, args.data_dir, args.split)
    threshold = OPERATING_THRESHOLD if inference.threshold is None else inference.threshold
    answer = inference.answer(run)
    pred = evaluate(split, answer, num_views=run.options["num_views"], num_absent=args.absent_queries,
                    min_score=args.min_score, nms_iou=inference.nms_iou, desc=args.split)
    hits, counts, beside_a_hit = false_detections(pred, threshold)
    print(f"{args.run_dir}, {args.split}, score >= {threshold}: {hits} detections at IoU >= 0.5 with the queried "
          "object")
    for query, row in counts.items():
        total = sum(row.values())
        print(f"  {query} queries' false detections ({total}): "
              + ", ".join(f"{kind} {n} ({n / max(total, 1):.0%})" for kind, n in row.items()))
    print(f"  of the badly placed, {beside_a_hit} beside a good box of the same instance")
    for nms in args.nms:
        figures = box_figures(pred if nms == inference.nms_iou else evaluate(
            split, dataclasses.replace(inference, nms_iou=nms).answer(run),
            num_views=run.options["num_views"], num_absent=args.absent_queries, min_score=args.min_score,
            nms_iou=nms), threshold)
        print(f"  NMS IoU {nms}: box AP50 {figures['box_ap50']:.3f}, AP[.50:.95] {figures['box_ap50_95']:.3f}, "
              f"false positives per absent query {figures['absent_false_positives_per_query']:.2f}", flush=True)
    return counts


if __name__ == "__main__":
    main()
