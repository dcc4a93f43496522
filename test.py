"""Zero-shot evaluation of a trained run on the test split: objects never seen in training.

    python test.py --run-dir pretrained --data-dir data/small     # see v3_test.sh; ~1 min on 2 cores

Every scene of the split is queried with each of its objects and with K objects that are not in
it (N reference views on grey, the models in inference mode). Per-cell figures are over the
objects present; box AP pools every query's detections (absent ones can only add false
positives). Writes OUT_DIR (default RUN_DIR/test/), replacing it whole: metrics.json,
pr_curve.png, neighbours.png (the embeddings' nearest neighbours), pairs/*.png for a sample of
(scene, object) pairs spread from worst to best and the worst absent queries, and index.html,
which shows them. An existing OUT_DIR is replaced only if it holds test.py's output and
nothing else; a kill at any moment leaves the old results or the new.
"""

import dataclasses
import html
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from boxes import visible  # noqa: E402
from data import Split  # noqa: E402
from evaluate import (MIN_SCORE, TEST_MARKER, box_figures, cell_figures, coco_figures, coco_json,  # noqa: E402
                      evaluate, evaluation_parser, family_figures, load, not_test_outputs, object_embeddings,
                      retrieval_recall)
from inference import FALSE_ALARM_BUDGET, Inference, read_run_file  # noqa: E402
from metrics import average_precision, precision_recall_curve  # noqa: E402
from models import enable_compilation_cache  # noqa: E402
from runs import EVALUATIONS, chooses_threshold, evaluation_dir, in_data  # noqa: E402
from util import (GREY, DataError, atomic_write, border, composite_uint8, draw_boxes, exits_in_one_line,  # noqa: E402
                  heatmap, hstack, non_negative_int, positive_int, read_json, remove_stale_temps, save_figure, save_png,
                  swap_dir, temp_path, tile, upsample, vstack, write_json_atomic)


def pair_ap(pred):
    """(S, C) AP of each present (scene, object) pair's own cells; NaN where the object is hidden."""
    c = pred.num_present
    probs, masks = pred.probs[:, :c], pred.masks[:, :c]
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
    views = composite_uint8(episode["anchors"][c], episode["anchor_backgrounds"][c])
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


def neighbour_collage(split, queries, keys, rows=8, k=10):
    """The original's nearest-neighbour plot: for `rows` objects of the split (evenly spread over its
    ids), the query's first view, then the first views of the k objects whose key embeddings are
    nearest its query embedding, nearest first; green frame: the object itself, red: another."""
    picks = np.linspace(0, len(queries) - 1, min(rows, len(queries))).round().astype(int)
    nearest = np.argsort(-(queries[picks] @ keys.T), axis=1, kind="stable")[:, :k]  # (rows, k)
    grey = np.full(3, GREY, dtype=np.uint8)

    def view(index):
        return composite_uint8(split.views(split.object_ids[index])[0], grey)

    lines = []
    for query, row in zip(picks, nearest):
        found = [border(view(j), (0, 200, 0) if j == query else (220, 0, 0)) for j in row]
        lines.append(hstack([view(query), tile(found, columns=k)], pad=12))
    return vstack(lines)


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


def evaluations(run_dir):
    """{dir name: metrics.json} of every evaluation test.py has written in the run dir."""
    found = {}
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name, "metrics.json")
        if os.path.exists(os.path.join(run_dir, name, TEST_MARKER)) and os.path.exists(path):
            found[name] = read_json(path)
    return found


def robustness_table(figures):
    """HTML rows comparing evaluations {name: metrics}: the headline figures, and box AP50 as a
    share of the test split's with rendered references."""
    test_ap = figures.get("test", {}).get("box_ap50")
    rows = ["<tr><th>evaluation</th><th>split</th><th>references</th><th>per-cell AP</th><th>box AP50</th>"
            "<th>AP[.50:.95]</th><th>recall, FP per absent query (threshold)</th><th>box AP50 / test's</th></tr>"]
    for name, m in figures.items():
        if "box_ap50" not in m:
            continue
        ratio = f"{m['box_ap50'] / test_ap:.2f}" if test_ap else "-"
        recall = f"{m['box_recall']:.3f}" if "box_recall" in m else "-"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{m['split']}</td><td>{m.get('references', 'renders')}</td>"
                    f"<td>{m['average_precision']:.3f}</td><td>{m['box_ap50']:.3f}</td><td>{m['box_ap50_95']:.3f}</td>"
                    f"<td>{recall}, {m['absent_false_positives_per_query']:.2f} ({m['box_threshold']:.3f})</td>"
                    f"<td>{ratio}</td></tr>")
        for family, f in m.get("by_family", {}).items():  # where a split mixes object families
            ratio = f"{f['box_ap50'] / test_ap:.2f}" if test_ap else "-"
            rows.append(f"<tr><td>{html.escape(name)}: {family} only</td><td>{m['split']}</td><td></td><td></td>"
                        f"<td>{f['box_ap50']:.3f}</td><td></td><td>{f['box_recall']:.3f}, "
                        f"{f['absent_false_positives_per_query']:.2f}</td><td>{ratio}</td></tr>")
    return "\n".join(rows) if len(rows) > 1 else ""


def write_index(path, run_dir, metrics, rows, absent_rows, neighbours=False, others=None):
    """rows: (name, scene index, object id, AP), worst first; absent_rows: (name, scene, object, top
    score); neighbours: whether neighbours.png is there; others: {name: metrics} of the run's
    evaluations, this one included, for the robustness table."""
    keys = ("average_precision", "positive_rate", "roc_auc", "f1@0.5", "retrieval_recall@1", "box_ap50",
            "box_ap50_95", "box_threshold", "box_recall", "absent_false_positives_per_query")
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
    nearest = (f"<h2>Nearest neighbours of the embeddings (retrieval recall@1 {metrics['retrieval_recall@1']:.3f})</h2>"
               "<p>Left: an object's first reference view; right: the 10 objects whose embedding (mean of their "
               "other views) is nearest its own, nearest first; green: itself, red: another object.</p>"
               '<img src="neighbours.png">') if neighbours else ""
    table = robustness_table(others or {})
    robustness = ("<h2>Robustness: this run's evaluations side by side</h2><p>The test objects under conditions "
                  "outside the training ranges: test_shift, seen from cameras farther and lower; crops, reference "
                  "views cut out of other scenes instead of clean renders (--references crops); test_backlit, "
                  "references lit from behind, as the original rendered them; test_relit, scenes under a low, "
                  "tinted light; test_everyday, pybullet's everyday meshes (duck, teddy, mug, ...) among test "
                  "objects. Recall and false alarms are at the run's own threshold, chosen on validation.</p>"
                  f"<table>{table}</table>") if table.count("<tr>") > 2 else ""
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
{robustness}
{nearest}
<h2>Objects in the scene, sorted by the pair's per-cell AP, worst first</h2>
<table>
{cells}
</table>
<h2>Objects NOT in the scene, highest top score (the worst false alarms) first</h2>
<table>
{absent}
</table></body></html>
"""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write(page)


def check_out_dir(out_dir, default):
    """A DataError unless out_dir is new, empty, or holds test.py's output alone (not_test_outputs)
    and was made by it (its marker) or is the default RUN_DIR/SPLIT: test.py replaces it whole, so it
    must never hold a file of the user's, nor a data dir's split."""
    if not os.path.exists(out_dir):
        parent = os.path.dirname(os.path.abspath(out_dir))
        if not os.path.isdir(parent):
            raise DataError(f"--out-dir {out_dir}: its parent {parent} does not exist: create it first")
        return
    if not os.path.isdir(out_dir):
        raise DataError(f"--out-dir {out_dir} is a file: give a new directory")
    if not os.listdir(out_dir):
        return
    foreign = not_test_outputs(out_dir)
    if foreign and os.path.abspath(out_dir) == os.path.abspath(default):
        raise DataError(f"{out_dir} holds {', '.join(foreign[:3])}, which test.py did not write, and test.py replaces "
                        "that dir whole: move them out, or give --out-dir a new directory")
    if foreign or (not os.path.exists(os.path.join(out_dir, TEST_MARKER))
                   and os.path.abspath(out_dir) != os.path.abspath(default)):
        raise DataError(f"--out-dir {out_dir} holds files test.py did not write, and it replaces its output dir "
                        "whole: give a new or empty directory")


def test(run_dir, data_dir, split_name="test", out_dir=None, num_views=0, background="grey", references="renders",
         batch_size=8, num_pictures=48, absent_queries=4, min_score=MIN_SCORE, choose_threshold=False, **settings):
    """Tests a run on a split and writes out_dir (default RUN_DIR/NAME: runs.evaluation_dir) ->
    metrics.json's dict. num_views 0: the N the run trained with. settings: inference.Inference's
    fields over the run's own; the threshold, unless given, the run's operating point for this way
    of scoring.

    choose_threshold: choose that operating point on this split (validation, rendered references,
    no pyramid): the lowest score that keeps the absent queries within FALSE_ALARM_BUDGET false
    detections each, stored in RUN_DIR/inference.json (choose_operating_point)."""
    run_file = read_run_file(run_dir)  # a broken inference.json is refused now, not after the evaluation
    inference = Inference.from_run_file(run_file, **settings)
    default_out = os.path.join(run_dir, evaluation_dir(split_name, references, inference,
                                                       Inference.from_run_file(run_file)))
    out_dir = out_dir or default_out
    check_out_dir(out_dir, default_out)
    if choose_threshold:
        if split_name != "validation" or references != "renders" or inference.pyramid[0] or "threshold" in settings:
            raise DataError("--choose-threshold chooses on --split validation, with rendered references, no pyramid "
                            "and no --threshold")
        inference = dataclasses.replace(inference, threshold=None)
    run, split = load(run_dir, data_dir, split_name)
    num_views = num_views or run.options["num_views"]
    if num_views > split.views_per_object:
        raise DataError(f"--num-views {num_views}: {data_dir}/{split_name} has only {split.views_per_object} "
                        "views per object")
    if inference.threshold is None and not choose_threshold and run.config.priors:
        given = "".join(f" --{k.replace('_', '-')} {settings[k]}" for k in ("box_score", "presence_power")
                        if k in settings) + (" --flips" if inference.flips else "")
        raise DataError(f"{run_dir} has no operating threshold for these settings yet: choose it on the validation "
                        f"split first: python test.py --run-dir {run_dir} --data-dir {data_dir} --split validation "
                        f"--choose-threshold{given} (sh v3_test.sh does), or give --threshold")
    pred = evaluate(split, inference.answer(run), num_views=num_views,
                    num_absent=absent_queries, batch_size=batch_size, background=background, references=references,
                    min_score=min_score, nms_iou=inference.nms_iou, desc="testing")
    embeddings = object_embeddings(split, run, num_views)
    metrics = cell_figures(pred, retrieval_recall(embeddings))
    threshold = inference.threshold
    if run.config.priors:
        coco_truth, coco_results = coco_json(pred)
        metrics.update(coco_figures(coco_truth, coco_results))
        metrics.update(box_figures(pred, threshold))  # threshold None: this split's own (it chooses)
        threshold = metrics["box_threshold"]
        if families := family_figures(pred, threshold):
            metrics["by_family"] = families
        if choose_threshold:
            inference.store(run_dir, choose_operating_point(metrics, data_dir, num_views, absent_queries))
    scales, min_gain = inference.pyramid
    metrics.update({"scenes_per_s": pred.scenes_per_s, "compile_s": pred.compile_s, "run_dir": run_dir,
                    "data_dir": data_dir, "split": split_name, "num_views": num_views, "background": background,
                    "references": references, "pyramid_scales": list(scales), "pyramid_min_gain": min_gain,
                    "flips": inference.flips, "box_score": inference.box_score,
                    "presence_power": inference.presence_power, "nms_iou": inference.nms_iou,
                    "crop_fallback_objects": sorted(pred.loader.crops.fallbacks)
                    if pred.loader.crops else [],
                    "device": jax.devices()[0].device_kind})

    remove_stale_temps(out_dir)
    tmp = temp_path(os.path.abspath(out_dir))
    os.makedirs(os.path.join(tmp, "pairs"))
    open(os.path.join(tmp, TEST_MARKER), "w").close()

    def draw(s, q):
        name = f"scene_{pred.scene_index[s]:04d}.obj_{pred.obj_ids[s, q]:03d}"
        found = pred.detections[s][q] if pred.detections else None
        for kind, image in pair_pictures(pred.loader.episode(s), pred.probs[s, q], q, found, threshold).items():
            save_png(os.path.join(tmp, "pairs", f"{name}.{kind}.png"), image)
        return name, int(pred.scene_index[s]), int(pred.obj_ids[s, q])

    c = pred.num_present
    ap = pair_ap(pred)
    rows = [(*draw(s, q), float(ap[s, q])) for s, q in sample_pairs(ap, num_pictures)]
    top = pred.probs[:, c:].max(axis=(2, 3))  # (S, K) the highest P(object) of each absent query
    worst = np.argsort(-top, axis=None)[:num_pictures // 4]
    absent_rows = [(*draw(s, c + k), float(top[s, k])) for s, k in zip(*np.unravel_index(worst, top.shape))]
    plot_pr_curves(os.path.join(tmp, "pr_curve.png"),
                   {"yolz": (pred.probs[:, :c], pred.masks[:, :c], metrics["average_precision"])},
                   metrics["positive_rate"])
    if embeddings is not None:
        save_png(os.path.join(tmp, "neighbours.png"), neighbour_collage(split, *embeddings))
    name = os.path.basename(os.path.abspath(out_dir))
    others = {**{n: m for n, m in evaluations(run_dir).items() if n != name}, name: metrics}
    write_index(os.path.join(tmp, "index.html"), run_dir, metrics, rows, absent_rows, embeddings is not None, others)
    write_json_atomic(os.path.join(tmp, "metrics.json"), metrics)
    if run.config.priors:
        write_json_atomic(os.path.join(tmp, "coco_ground_truth.json"), coco_truth, indent=None)
        write_json_atomic(os.path.join(tmp, "coco_detections.json"), coco_results, indent=None)
    swap_dir(tmp, out_dir)
    crops = " (reference views cut from other scenes)" if references == "crops" else ""
    seen = "trained on" if split_name == "train" else "never seen in training"
    print(f"{split_name} split{crops}, {metrics['num_objects']} objects {seen}, "
          f"{metrics['num_scenes']} scenes: per-cell AP {metrics['average_precision']:.3f} "
          f"(a constant guess: {metrics['positive_rate']:.3f}), "
          f"ROC AUC {metrics['roc_auc']:.3f}, F1@0.25 {metrics['f1@0.25']:.3f}, F1@0.5 {metrics['f1@0.5']:.3f}, "
          f"retrieval recall@1 {metrics['retrieval_recall@1'] or float('nan'):.3f}; {pred.scenes_per_s:.1f} scenes/s")
    if "box_ap50" in metrics:
        print(f"boxes, COCO (pycocotools, mean over objects): AP {metrics['coco_ap']:.3f}, AP50 "
              f"{metrics['coco_ap50']:.3f}, AP75 {metrics['coco_ap75']:.3f}; yolz's (pooled over queries): AP50 "
              f"{metrics['box_ap50']:.3f}, AP[.50:.95] {metrics['box_ap50_95']:.3f}; at score {threshold}: recall "
              f"{metrics['box_recall']:.3f}, precision {metrics['box_precision']:.3f}, false positives per absent "
              f"query {metrics['absent_false_positives_per_query']:.2f}; recall "
              f"{metrics['box_recall_at_false_alarm_budget']:.3f} at {FALSE_ALARM_BUDGET} false positives per absent "
              f"query (score > {metrics['box_threshold_at_false_alarm_budget']:.3f})")
    coco = ", coco_ground_truth.json, coco_detections.json" if run.config.priors else ""
    print(f"wrote {out_dir}/: metrics.json{coco}, pr_curve.png, pairs/; look at {out_dir}/index.html")
    return metrics


def choose_operating_point(metrics, data_dir, num_views, absent_queries):
    """box_figures() of a validation split at its own threshold -> the operating point a run stores."""
    return {"threshold": metrics["box_threshold"], "precision": metrics["box_precision"],
            "recall": metrics["box_recall"], "f1": metrics["box_f1"],
            "absent_false_positives_per_query": metrics["absent_false_positives_per_query"], "chosen_on": "validation",
            "data_dir": data_dir, "num_views": num_views, "absent_queries": absent_queries,
            "rule": f"the lowest score at which absent queries raise at most {FALSE_ALARM_BUDGET} detections each "
                    "(all false); recall and precision at IoU 0.5"}


def suite(run_dir, data_dir, **options):
    """runs.EVALUATIONS, each the data dir has a split for, in order, each into RUN_DIR/NAME ->
    {name: metrics}. Validation chooses the run's operating threshold when it has none yet."""
    done = {}
    for name, evaluation in EVALUATIONS.items():
        if not in_data(data_dir, evaluation):
            continue
        settings = {k: v for k, v in options.items() if k in Inference.__dataclass_fields__}
        choose = chooses_threshold(run_dir, evaluation, settings)
        print(f"--- {name}" + (" (choosing the run's operating threshold)" if choose else ""), flush=True)
        done[name] = test(run_dir, data_dir, **{**options, **evaluation}, choose_threshold=choose)
    if not done:
        Split(data_dir, "test")  # says what is missing
    return done


def make_parser():
    parser = evaluation_parser(__doc__, "default: RUN_DIR/SPLIT")
    parser.add_argument("--num-views", type=non_negative_int, default=0,
                        help="N reference views per object; 0: the run's own N")
    parser.add_argument("--background", choices=("grey", "random"), default="grey",
                        help="colour the reference views are composited on (training used random ones)")
    parser.add_argument("--references", choices=("renders", "crops"), default="renders",
                        help="crops: each query's reference views cut out of the split's other scenes around the "
                        "object (real background, as a user would crop photos) instead of clean renders")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="scenes per eval step")
    parser.add_argument("--num-pictures", type=non_negative_int, default=48,
                        help="(scene, object) pairs drawn, worst to best, and a quarter as many absent queries")
    parser.add_argument("--choose-threshold", action="store_true",
                        help="on --split validation: choose the run's operating threshold for these inference "
                        f"settings (the lowest score keeping false alarms to {FALSE_ALARM_BUDGET} per absent query) "
                        "and store it in RUN_DIR/inference.json")
    parser.add_argument("--suite", action="store_true",
                        help="run the evaluation suite (validation, test_shift, test_shift_pyramid2_auto, test_crops, "
                        "test: those the data dir has) into RUN_DIR/NAME each; --split and --out-dir do not apply")
    return parser


def main(argv=None):
    enable_compilation_cache()
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.suite and (args.out_dir or args.choose_threshold or args.split != "test" or args.references != "renders"):
        parser.error("--suite runs its own evaluations: give no --split, --out-dir, --references or --choose-threshold")
    options = dict(num_views=args.num_views, background=args.background, batch_size=args.batch_size,
                   num_pictures=args.num_pictures, absent_queries=args.absent_queries, min_score=args.min_score,
                   **Inference.from_flags(args))
    with exits_in_one_line(f"interrupted: {args.out_dir or 'the output dir'} is as it was (the old results, or none)"):
        if args.suite:
            return suite(args.run_dir, args.data_dir, **options)
        return test(args.run_dir, args.data_dir, args.split, out_dir=args.out_dir, references=args.references,
                    choose_threshold=args.choose_threshold, **options)


if __name__ == "__main__":
    main()
