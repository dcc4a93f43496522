"""Zero-shot evaluation of a trained run on the test split: objects never seen in training.

    python test.py --run-dir pretrained --data-dir data/small     # see v3_test.sh; ~1 min on 2 cores

Every scene of the split is queried with each of its objects and with K objects that are not in
it (N reference views on grey, the models in inference mode). Per-cell figures are over the
objects present; box AP pools every query's detections (absent ones can only add false
positives). Writes OUT_DIR (default RUN_DIR/test/), replacing it whole: metrics.json,
pr_curve.png, pairs/*.png for a sample of (scene, object) pairs spread from worst to best and the
worst absent queries, and index.html, which shows them.
"""

import argparse
import html
import os
import shutil
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import train  # noqa: E402  (also sets up the persistent compilation cache)
from boxes import detections, visible  # noqa: E402
from data import GREY, DataError, EpisodeLoader, Split, composite, write_json_atomic  # noqa: E402
from metrics import (average_precision, box_metrics, match_detections, pixel_metrics,  # noqa: E402
                     precision_recall_curve, recall_at_1)
from util import draw_boxes, heatmap, hstack, save_figure, save_png, upsample  # noqa: E402


OPERATING_THRESHOLDS = tuple(float(round(t, 2)) for t in np.arange(0.05, 0.951, 0.05))


def retrieval(split, params, nt_params, step, num_views):
    """recall@1 of each object's mean embedding of views [0, N) among all objects' views [N, 2N);
    None when the split has fewer than 2N views per object."""
    if 2 * num_views > split.views_per_object:
        return None
    views = np.stack([split.views(i)[:2 * num_views] for i in split.object_ids])  # (K, 2N, h, w, 4) uint8
    grey = np.full((*views.shape[:1], num_views, 3), GREY, dtype=np.uint8)  # (K, N, 3)
    queries = train.embed_step(params, nt_params, views[:, :num_views], grey, step)
    keys = train.embed_step(params, nt_params, views[:, num_views:], grey, step)
    return recall_at_1(np.asarray(queries), np.asarray(keys))


def predict(split, params, nt_params, step, args):
    """Every (scene, object) pair of the split, and args.absent_queries objects per scene that are
    not in it -> dict of (S, Q, ...) arrays (Q = C present + K absent), and the eval speed
    (loading + jitted step + box decoding, after a first call that compiles).

    Episode i of an inference-mode loader with C = all objects of a scene shows each scene once.
    """
    loader = EpisodeLoader(split, split.objects_per_scene, args.num_views, seed=0, training=False,
                           num_absent=args.absent_queries, positives=False, background=args.background)
    num, size = split.num_scenes, args.batch_size
    config = step.config

    def batch_at(start):  # a short last batch is padded with episode 0, so the step compiles once
        episodes = [loader.episode(i if i < num else 0) for i in range(start, start + size)]
        return {k: np.stack([e[k] for e in episodes]) for k in (*train.EVAL_KEYS, "masks", "obj_ids", "boxes")}

    started = time.perf_counter()
    jax.block_until_ready(train.eval_step(params, nt_params, {k: batch_at(0)[k] for k in train.EVAL_KEYS}, step))
    compiled = time.perf_counter()
    probs, masks, obj_ids, true_boxes, found = [], [], [], [], []
    for start in tqdm(range(0, num, size), desc="testing", unit="batch", dynamic_ncols=True):
        batch = batch_at(start)
        p, raw, _ = train.eval_step(params, nt_params, {k: batch[k] for k in train.EVAL_KEYS}, step)
        probs.append(np.asarray(p))
        masks.append(batch["masks"])
        obj_ids.append(batch["obj_ids"])
        true_boxes.append(batch["boxes"])
        if raw is not None:
            raw = np.asarray(raw)  # (B, Q, G, G, A, 5)
            found += [[detections(r, config.priors, config.stride, args.min_score, args.nms_iou) for r in scene]
                      for scene in raw[:num - start]]
    speed = {"scenes_per_s": num / (time.perf_counter() - compiled), "compile_s": compiled - started}
    return {"probs": np.concatenate(probs)[:num],  # (S, Q, G, G) float32 in [0, 1]
            "masks": np.concatenate(masks)[:num],  # (S, Q, G, G) uint8 {0, 1}
            "obj_ids": np.concatenate(obj_ids)[:num],  # (S, Q) int
            "boxes": np.concatenate(true_boxes)[:num],  # (S, Q, I, 4) int16, -1 rows hidden
            "detections": found,  # [S][Q] of ((n, 4) boxes, (n,) scores); [] without a box head
            "num_present": split.objects_per_scene,  # C: queries [0, C) present, [C, Q) absent
            "scene_index": np.array([loader.scene_index(i) for i in range(num)]),  # (S,)
            "loader": loader}, speed


def box_queries(pred):
    """-> (present, absent): (boxes, scores, visible true boxes) of each query's detections."""
    present, absent = [], []
    for s, row in enumerate(pred["detections"]):
        for q, (boxes, scores) in enumerate(row):
            (present if q < pred["num_present"] else absent).append((boxes, scores, visible(pred["boxes"][s, q])))
    return present, absent


def box_figures(pred, threshold):
    """Box AP over every query (absent ones add only false positives), AP of present queries alone,
    and false positives per absent query at the operating threshold."""
    present, absent = box_queries(pred)
    out = {f"box_{k}": v for k, v in box_metrics(present + absent).items()}
    out.update({f"box_{k}_present_only": v for k, v in box_metrics(present).items() if k.startswith("ap")})
    out.update({"absent_queries": len(absent), "box_threshold": threshold,
                "absent_false_positives_per_query": false_positives_per_query([sc for _, sc, _ in absent], threshold),
                "box_operating_points": operating_points(present, absent)})
    return out


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


def figures(pred, recall1):
    """metrics.json's per-cell figures, pooled and per object, over the queries of objects present."""
    c = pred["num_present"]
    probs, masks, obj_ids = pred["probs"][:, :c], pred["masks"][:, :c], pred["obj_ids"][:, :c]
    out = pixel_metrics(probs, masks)
    per_object = {}
    for obj_id in np.unique(obj_ids):
        where = obj_ids == obj_id  # (S, C) bool
        ap = average_precision(probs[where], masks[where])
        per_object[str(int(obj_id))] = ap if np.isfinite(ap) else None  # None: hidden in all its scenes
    finite = [v for v in per_object.values() if v is not None]
    out.update({"mean_per_object_average_precision": float(np.mean(finite)) if finite else float("nan"),
                "per_object_average_precision": per_object, "retrieval_recall@1": recall1,
                "num_scenes": int(len(probs)), "num_objects": int(len(per_object)),
                "num_pairs": int(probs.shape[0] * probs.shape[1])})
    return out


def pair_ap(pred):
    """(S, C) AP of each present (scene, object) pair's own cells; NaN where the object is hidden."""
    c = pred["num_present"]
    probs, masks = pred["probs"][:, :c], pred["masks"][:, :c]
    return np.array([[average_precision(probs[s, c], masks[s, c]) for c in range(probs.shape[1])]
                     for s in range(probs.shape[0])])


def sample_pairs(ap, count):
    """`count` pairs (s, c) spread evenly from the worst AP to the best, hidden objects left out."""
    s, c = np.nonzero(np.isfinite(ap))
    order = np.argsort(ap[s, c], kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int))]
    return list(zip(s[picks], c[picks]))


def pair_pictures(episode, prob, c, found, threshold):
    """The PNGs of one (scene, object) pair, keyed by the file name's suffix; found: its detections."""
    scene = episode["scene"]  # (H, W, 3) uint8
    size = scene.shape[0]
    y_true = upsample(episode["masks"][c].astype(np.float32), size)  # (H, W) in {0, 1}
    y_pred = upsample(prob, size)  # (H, W) in [0, 1]
    views = (composite(episode["anchors"][c], episode["anchor_backgrounds"][c]) * 255).astype(np.uint8)
    grey = [np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2) for m in (y_true, y_pred)]
    alpha = [np.dstack([scene, (a * 255).astype(np.uint8)]) for a in (y_pred, np.ones_like(y_pred), y_true)]
    boxes = visible(episode["boxes"][c])
    pictures = {"anchors": hstack(list(views)), "y_true_pred.mask": hstack(grey), "y_true_pred.alpha": hstack(alpha),
                "heatmap": draw_boxes(heatmap(scene, prob), boxes, [(255, 255, 255)] * len(boxes), width=1)}
    if found is not None:  # true boxes in green, detections over the threshold in red with their score
        shown = found[1] >= threshold
        pictures["boxes"] = draw_boxes(draw_boxes(scene, boxes, [(0, 255, 0)] * len(boxes)), found[0][shown],
                                       [(255, 0, 0)] * int(shown.sum()), [f"{v:.2f}" for v in found[1][shown]])
    return pictures


def plot_pr_curves(path, curves, positive_rate):
    """curves: {name: ((S, Q, G, G) scores, labels, AP)} of the objects present -> one PR plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (probs, masks, ap) in curves.items():
        precision, recall = precision_recall_curve(probs, masks)
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax.axhline(positive_rate, color="grey", linestyle="--", label=f"constant guess (AP {positive_rate:.3f})")
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.set_title("per-cell precision-recall, unseen objects"), ax.legend()
    save_figure(path, fig)


def write_index(path, run_dir, metrics, rows, absent_rows):
    """rows: (name, scene index, object id, AP), worst first; absent_rows: (name, scene, object, top score)."""
    keys = ("average_precision", "positive_rate", "roc_auc", "f1@0.5", "retrieval_recall@1", "box_ap50",
            "box_ap50_95", "absent_false_positives_per_query")
    headline = ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if metrics.get(k) is not None)
    has_boxes = "box_ap50" in metrics

    def row(name, text):
        return (f'<tr><td>{text}<br><img src="pairs/{html.escape(name)}.anchors.png"></td>'
                f'<td><img src="pairs/{html.escape(name)}.heatmap.png"></td>'
                + (f'<td><img src="pairs/{html.escape(name)}.boxes.png"></td>' if has_boxes else "")
                + f'<td><img class="wide" src="pairs/{html.escape(name)}.y_true_pred.alpha.png"></td></tr>')

    cells = "\n".join(row(name, f"scene {s}, object {o}<br>AP {ap:.3f}") for name, s, o, ap in rows)
    absent = "\n".join(row(name, f"scene {s}, object {o} (absent)<br>top score {top:.3f}")
                        for name, s, o, top in absent_rows)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>yolz test: {html.escape(run_dir)}</title>
<style>body {{font-family: sans-serif}} td {{vertical-align: top; padding: 4px}}
img {{image-rendering: pixelated}} img.wide {{width: 640px}} tr:nth-child(even) {{background: #eee}}</style></head>
<body><h1>yolz on unseen objects: {html.escape(run_dir)}</h1>
<p>{html.escape(headline)} ({metrics["num_scenes"]} scenes, {metrics["num_objects"]} objects).
Each row: the pair and its reference views | heatmap of P(object), true boxes in white |{
" true boxes (green) and detections over the threshold (red, with score) |" if has_boxes else ""} scene with
y_pred as alpha, scene, scene with y_true as alpha.</p>
<img src="pr_curve.png">
<h2>Objects in the scene, sorted by the pair's per-cell AP, worst first</h2>
<table>
{cells}
</table>
<h2>Objects NOT in the scene, highest top score (the worst false alarms) first</h2>
<table>
{absent}
</table></body></html>
"""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(page)
    os.replace(tmp, path)


def load(run_dir, data_dir, split_name):
    """A finished run and the split it is evaluated on -> (options, config, step, params, nt_params,
    split); a DataError if they do not fit together."""
    options, config, step, params, nt_params = train.load_run(run_dir)
    split = Split(data_dir, split_name)
    train.check_scene_size(split, config)
    return options, config, step, params, nt_params, split


def test(args):
    options, config, step, params, nt_params, split = load(args.run_dir, args.data_dir, args.split)
    num_views = args.num_views or options["num_views"]
    if num_views > split.views_per_object:
        raise DataError(f"--num-views {num_views}: {args.data_dir}/{args.split} has only {split.views_per_object} "
                        "views per object")

    args.num_views = num_views
    pred, speed = predict(split, params, nt_params, step, args)
    metrics = figures(pred, retrieval(split, params, nt_params, step, num_views))
    if config.priors:
        metrics.update(box_figures(pred, args.threshold))
    metrics.update({**speed, "run_dir": args.run_dir, "data_dir": args.data_dir, "split": args.split,
                    "num_views": num_views, "background": args.background, "device": jax.devices()[0].device_kind})

    out_dir = args.out_dir or os.path.join(args.run_dir, args.split)
    tmp = f"{out_dir.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "pairs"))

    def draw(s, q):
        name = f"scene_{pred['scene_index'][s]:04d}.obj_{pred['obj_ids'][s, q]:03d}"
        found = pred["detections"][s][q] if pred["detections"] else None
        for kind, image in pair_pictures(pred["loader"].episode(s), pred["probs"][s, q], q, found,
                                         args.threshold).items():
            save_png(os.path.join(tmp, "pairs", f"{name}.{kind}.png"), image)
        return name, int(pred["scene_index"][s]), int(pred["obj_ids"][s, q])

    ap = pair_ap(pred)
    rows = [(*draw(s, c), float(ap[s, c])) for s, c in sample_pairs(ap, args.num_pictures)]
    top = pred["probs"][:, pred["num_present"]:].max(axis=(2, 3))  # (S, K) the highest P(object) of each absent query
    worst = np.argsort(-top, axis=None)[:args.num_pictures // 4]
    absent_rows = [(*draw(s, pred["num_present"] + k), float(top[s, k]))
                   for s, k in zip(*np.unravel_index(worst, top.shape))]
    c = pred["num_present"]
    plot_pr_curves(os.path.join(tmp, "pr_curve.png"),
                   {"yolz": (pred["probs"][:, :c], pred["masks"][:, :c], metrics["average_precision"])},
                   metrics["positive_rate"])
    write_index(os.path.join(tmp, "index.html"), args.run_dir, metrics, rows, absent_rows)
    write_json_atomic(os.path.join(tmp, "metrics.json"), metrics)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)
    print(f"{args.split} split, {metrics['num_objects']} objects never seen in training, {metrics['num_scenes']} scenes: "
          f"per-cell AP {metrics['average_precision']:.3f} (a constant guess: {metrics['positive_rate']:.3f}), "
          f"ROC AUC {metrics['roc_auc']:.3f}, F1@0.25 {metrics['f1@0.25']:.3f}, F1@0.5 {metrics['f1@0.5']:.3f}, "
          f"retrieval recall@1 {metrics['retrieval_recall@1'] or float('nan'):.3f}; {speed['scenes_per_s']:.1f} "
          "scenes/s")
    if "box_ap50" in metrics:
        print(f"boxes: AP50 {metrics['box_ap50']:.3f}, AP[.50:.95] {metrics['box_ap50_95']:.3f} (absent queries "
              f"included), false positives per absent query {metrics['absent_false_positives_per_query']:.2f} at "
              f"score {args.threshold}")
    print(f"wrote {out_dir}/: metrics.json, pr_curve.png, pairs/; look at {out_dir}/index.html")
    return metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained", help="a finished run of train.py (v3_train.sh)")
    parser.add_argument("--data-dir", default="data/small", help="made by generate_split_chunk_data.sh")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--out-dir", help="default: RUN_DIR/SPLIT")
    parser.add_argument("--num-views", type=int, default=0, help="N reference views per object; 0: the run's own N")
    parser.add_argument("--background", choices=("grey", "random"), default="grey",
                        help="colour the reference views are composited on (training used random ones)")
    parser.add_argument("--batch-size", type=int, default=8, help="scenes per eval step")
    parser.add_argument("--num-pictures", type=int, default=48,
                        help="(scene, object) pairs drawn, worst to best, and a quarter as many absent queries")
    parser.add_argument("--absent-queries", type=int, default=4,
                        help="K: objects of the split NOT in the scene queried per scene")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="operating score of a box detection (best box F1 on the validation split, pretrained)")
    parser.add_argument("--min-score", type=float, default=0.01, help="lowest box score kept for AP")
    parser.add_argument("--nms-iou", type=float, default=0.5, help="non-max suppression IoU")
    return parser.parse_args(argv)


def main(argv=None):
    try:
        return test(parse_args(argv))
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
