"""Baselines on the test split, scored with test.py's own metrics, beside yolz itself.

    python baselines.py --run-dir pretrained --data-dir data/small    # ~4 min on 2 cores

Every method answers the queries test.py asks (each scene with each of its objects and K absent
ones, N reference views on grey) with a (G, G) score map and boxes per query:
- template: OpenCV's normalised cross-correlation (TM_CCOEFF_NORMED) of each reference view,
  cropped to its object and composited on grey, at several sizes, over the scene; per cell the
  best response over views and sizes, and the box of the template that gave it;
- embedding: the run's embedding model on a window around every cell of the scene, scored by
  the cosine similarity with the query's mean embedding (what the embeddings alone know), boxes
  the run's middle prior centred on the cell;
- yolz: the run itself.
All go through evaluate.evaluate (baselines' scores mapped to [0, 1] as (s + 1) / 2, order kept;
boxes through the same threshold + NMS), and each method is compared at its own best box F1.
Writes OUT_DIR/baselines.json and baselines_pr.png, and prints the table.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from evaluate import (best_operating_point, box_figures, box_queries, cell_figures, evaluate,  # noqa: E402
                      evaluation_parser, load, operating_points)
from inference import OPERATING_THRESHOLD, Inference  # noqa: E402
from models import embed_objects, enable_compilation_cache  # noqa: E402
from test import plot_pr_curves  # noqa: E402
from util import (GREY, composite_uint8, exits_in_one_line, non_negative_int, positive_int,  # noqa: E402
                  write_json_atomic)


def view_templates(views, sizes):
    """(N, h, w, 4) uint8 RGBA views -> (t, s, 3) uint8 RGB templates: each view cropped to its
    object, composited on grey, resized so that its longer side is each of `sizes`."""
    templates = []
    for view in views:
        ys, xs = np.nonzero(view[..., 3])
        if not len(ys):
            continue
        crop = view[ys.min():ys.max() + 1, xs.min():xs.max() + 1]  # (h', w', 4)
        rgb = composite_uint8(crop, np.full(3, GREY, np.uint8))
        for size in sizes:
            scale = size / max(crop.shape[:2])
            shape = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (w, h)
            templates.append(cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA))
    return templates


def template_map(scene, templates, grid):
    """(H, W, 3) uint8 scene -> (G, G) best correlation per cell in [-1, 1], (G, G, 4) its box."""
    size = scene.shape[0]
    cell = size // grid
    best = np.full((size, size), -1.0, np.float32)  # by the pixel under the template's centre
    wh = np.zeros((size, size, 2), np.float32)
    for t in templates:
        h, w = t.shape[:2]
        response = np.nan_to_num(cv2.matchTemplate(scene, t, cv2.TM_CCOEFF_NORMED), nan=-1.0)  # (H-h+1, W-w+1)
        rows, cols = slice(h // 2, h // 2 + response.shape[0]), slice(w // 2, w // 2 + response.shape[1])
        better = response > best[rows, cols]
        best[rows, cols][better] = response[better]
        wh[rows, cols][better] = (w, h)
    per_cell = best.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, cell * cell)
    where = per_cell.argmax(axis=-1)  # (G, G) pixel of the best response inside each cell
    y = np.arange(grid)[:, None] * cell + where // cell
    x = np.arange(grid)[None, :] * cell + where % cell
    w, h = wh[y, x, 0], wh[y, x, 1]
    return per_cell.max(axis=-1), np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def window_embeddings(scene, run, window, batch=400):
    """(H, W, 3) uint8 scene -> (G*G, E) embeddings of a window x window crop centred on each
    cell (grey beyond the edges), resized to the reference views' size."""
    config = run.config
    g, size = config.grid_size, config.view_size
    cell = scene.shape[0] // g
    pad = window // 2
    padded = np.pad(scene, ((pad, pad), (pad, pad), (0, 0)), constant_values=GREY)
    centres = np.arange(g) * cell + cell // 2  # in scene pixels = top-left corners in padded ones
    crops = np.stack([cv2.resize(padded[y:y + window, x:x + window], (size, size), interpolation=cv2.INTER_AREA)
                      for y in centres for x in centres])  # (G*G, v, v, 3) uint8
    rgba = np.concatenate([crops, np.full((*crops.shape[:3], 1), 255, np.uint8)], axis=-1)[:, None]  # (G*G, 1, v, v, 4)
    opaque = np.zeros((batch, 1, 3), np.uint8)  # no background shows through alpha 255
    out = []
    for start in range(0, len(rgba), batch):
        chunk = rgba[start:start + batch]
        filled = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.uint8)])
        out.append(np.asarray(embed_objects(run.params, run.nt_params, filled, opaque, run.models))[:len(chunk)])
    return np.concatenate(out)


def baseline_answer(answer_episode):
    """answer_episode(episode) -> ((Q, G, G) scores in [-1, 1], (Q, G, G, 4) a box per cell) as an
    evaluate() answer: scores mapped to [0, 1], each cell's box a candidate with its cell's score."""
    def answer(batch):
        probs, candidates = [], []
        for b in range(len(batch["scene"])):
            scores, boxes = answer_episode({k: v[b] for k, v in batch.items()})
            scores = (scores + 1) / 2  # (Q, G, G) in [0, 1]
            probs.append(scores)
            candidates.append([(bx.reshape(-1, 4), s.reshape(-1)) for s, bx in zip(scores, boxes)])
        return np.stack(probs), candidates

    return answer


def scored(name, pred):
    """One row of the table: test.py's per-cell and box figures, at the method's best box F1."""
    figures = {**cell_figures(pred), **box_figures(pred, OPERATING_THRESHOLD)}
    present, absent = box_queries(pred)
    # thresholds at quantiles of the scores: the methods' scores crowd into different ranges
    scores = np.concatenate([sc for _, sc, _ in present + absent])
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 0.99, 100)).round(4)) if len(scores) else [1.0]
    best = best_operating_point(operating_points(present, absent, thresholds))
    return {"method": name, "average_precision": figures["average_precision"], "roc_auc": figures["roc_auc"],
            "mean_per_object_average_precision": figures["mean_per_object_average_precision"],
            "box_ap50": figures["box_ap50"], "box_ap50_95": figures["box_ap50_95"], "best_box_f1": best["f1"],
            "at_threshold": best["threshold"], "precision": best["precision"], "recall": best["recall"],
            "absent_false_positives_per_query": best["absent_false_positives_per_query"],
            "queries_per_s": pred.probs.shape[1] * pred.scenes_per_s,
            "positive_rate": figures["positive_rate"]}


def main(argv=None):
    parser = evaluation_parser(__doc__, "default: RUN_DIR/baselines, for baselines.json and baselines_pr.png",
                               run_dir_help="the yolz run compared (and whose embeddings are used)")
    parser.add_argument("--num-views", type=non_negative_int, default=0,
                        help="N reference views per query; 0: the run's own N")
    parser.add_argument("--template-sizes", type=positive_int, nargs="+", default=[16, 24, 32],
                        help="longer side, in scene pixels, each template is matched at")
    parser.add_argument("--window", type=positive_int, default=32,
                        help="embedding baseline: crop size around each cell")
    parser.add_argument("--methods", nargs="+", choices=("yolz", "template", "embedding"),
                        default=["yolz", "template", "embedding"])
    args = parser.parse_args(argv)
    out_dir = args.out_dir or os.path.join(args.run_dir, "baselines")
    enable_compilation_cache()
    with exits_in_one_line():
        inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
        run, split = load(args.run_dir, args.data_dir, args.split)
    num_views = args.num_views or run.options["num_views"]
    config = run.config

    def template(episode):
        scene = episode["scene"]
        maps = [template_map(scene, view_templates(views, args.template_sizes), config.grid_size)
                for views in episode["anchors"]]
        return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])

    prior = np.asarray(config.priors[len(config.priors) // 2] if config.priors else (args.window, args.window))
    g, cell = config.grid_size, config.stride
    centres = np.arange(g) * cell + cell / 2
    cx, cy = np.meshgrid(centres, centres)
    cell_boxes = np.stack([cx - prior[0] / 2, cy - prior[1] / 2, cx + prior[0] / 2, cy + prior[1] / 2], -1)  # (G, G, 4)

    def embedding(episode):
        windows = window_embeddings(episode["scene"], run, args.window)  # (G*G, E)
        queries = np.asarray(embed_objects(run.params, run.nt_params, episode["anchors"], episode["anchor_backgrounds"],
                                           run.models))  # (Q, E)
        scores = (queries @ windows.T).reshape(len(queries), g, g)  # cosine: both unit length
        return scores, np.broadcast_to(cell_boxes, (len(queries), g, g, 4))

    answers = {"yolz": (inference.answer(run), 8),  # (answer, scenes per call)
               "template": (baseline_answer(template), 1), "embedding": (baseline_answer(embedding), 1)}
    rows, curves = [], {}
    for name in args.methods:
        answer, batch_size = answers[name]
        pred = evaluate(split, answer, num_views=num_views, num_absent=args.absent_queries, batch_size=batch_size,
                        min_score=args.min_score, nms_iou=inference.nms_iou, desc=name)
        rows.append(scored(name, pred))
        c = pred.num_present
        curves[name] = (pred.probs[:, :c], pred.masks[:, :c], rows[-1]["average_precision"])

    os.makedirs(out_dir, exist_ok=True)
    plot_pr_curves(os.path.join(out_dir, "baselines_pr.png"), curves, rows[0]["positive_rate"])
    result = {"run_dir": args.run_dir, "data_dir": args.data_dir, "split": args.split, "num_views": num_views,
              "absent_queries": args.absent_queries, "template_sizes": args.template_sizes, "window": args.window,
              "rows": rows}
    write_json_atomic(os.path.join(out_dir, "baselines.json"), result)
    print(f"{args.split} split of {args.data_dir}, N={num_views} views on grey, K={args.absent_queries} absent "
          "queries per scene; box figures at each method's best-F1 threshold")
    print("| method | per-cell AP | ROC AUC | box AP50 | box AP[.5:.95] | best box F1 (threshold) | precision | recall "
          "| false positives per absent query | queries/s |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['average_precision']:.3f} | {r['roc_auc']:.3f} | {r['box_ap50']:.3f} | "
              f"{r['box_ap50_95']:.3f} | {r['best_box_f1']:.3f} ({r['at_threshold']:.2f}) | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['absent_false_positives_per_query']:.2f} | {r['queries_per_s']:.1f} |")
    print(f"per-cell AP of a constant guess: {rows[0]['positive_rate']:.3f}; wrote {out_dir}/baselines.json, "
          "baselines_pr.png")
    return result


if __name__ == "__main__":
    main()
