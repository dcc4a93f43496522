"""Ablations of a trained run at test time (no retraining): the number of reference views N, and
the colour the views sit on.

    python ablations.py --run-dir pretrained --data-dir data/small    # ~2 min on 2 cores

Every setting answers the queries test.py asks (each test scene with each of its objects and K
absent ones) and is scored by test.py's functions: per-cell AP of the objects present and box
AP50 of every query. Writes OUT_DIR/ablations.json and ablations.png, prints the table.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")


from evaluate import box_figures, cell_figures, evaluate, evaluation_parser, load  # noqa: E402
from inference import OPERATING_THRESHOLD, Inference  # noqa: E402
from models import enable_compilation_cache  # noqa: E402
from util import DataError, exits_in_one_line, positive_int, save_figure, write_json_atomic  # noqa: E402


def plot(path, rows, trained_views):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for background, marker in (("grey", "o"), ("random", "s")):
        points = sorted((r["num_views"], r) for r in rows if r["background"] == background)
        n = [p[0] for p in points]
        for key, colour in (("average_precision", "C0"), ("box_ap50", "C1")):
            ax.plot(n, [p[1][key] for p in points], marker=marker, color=colour,
                    linestyle="-" if background == "grey" else ":", label=f"{key}, views on {background}")
    ax.axvline(trained_views, color="grey", linewidth=0.8, label=f"N in training ({trained_views})")
    ax.set_xscale("log", base=2), ax.set_xlabel("reference views per query (N)"), ax.set_ylim(0, 1)
    ax.set_title("test split, objects never seen in training"), ax.legend(fontsize=8)
    save_figure(path, fig)


def main(argv=None):
    parser = evaluation_parser(__doc__, "default: RUN_DIR/ablations, for ablations.json and ablations.png")
    parser.add_argument("--views", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16], help="values of N, on grey")
    parser.add_argument("--random-views", type=positive_int, nargs="*", default=[1, 4, 16],
                        help="values of N also tried on random background colours")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="scenes per eval step")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or os.path.join(args.run_dir, "ablations")
    enable_compilation_cache()
    with exits_in_one_line():
        inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
        run, split = load(args.run_dir, args.data_dir, args.split)
        too_many = max(args.views + args.random_views)
        if too_many > split.views_per_object:
            raise DataError(f"N={too_many}: {args.data_dir}/{args.split} has only {split.views_per_object} views "
                            "per object; lower --views / --random-views")

    rows, answer = [], inference.answer(run)
    for background, views in (("grey", args.views), ("random", args.random_views)):
        for n in views:
            pred = evaluate(split, answer, num_views=n, num_absent=args.absent_queries, batch_size=args.batch_size,
                            background=background, min_score=args.min_score, nms_iou=inference.nms_iou,
                            desc=f"N={n} on {background}")
            figures = cell_figures(pred)
            boxes = box_figures(pred, inference.threshold or OPERATING_THRESHOLD) if run.config.priors else {}
            rows.append({"num_views": n, "background": background, "average_precision": figures["average_precision"],
                         "mean_per_object_average_precision": figures["mean_per_object_average_precision"],
                         "box_ap50": boxes.get("box_ap50", float("nan"))})

    trained_views = run.options["num_views"]
    os.makedirs(out_dir, exist_ok=True)
    plot(os.path.join(out_dir, "ablations.png"), rows, trained_views)
    write_json_atomic(os.path.join(out_dir, "ablations.json"),
                      {"run_dir": args.run_dir, "data_dir": args.data_dir, "split": args.split,
                       "absent_queries": args.absent_queries, "rows": rows})
    print(f"{args.split} split of {args.data_dir}, run {args.run_dir} (trained with N={trained_views} on random "
          "colours)\n| N | views on | per-cell AP | mean per-object AP | box AP50 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['num_views']} | {r['background']} | {r['average_precision']:.3f} | "
              f"{r['mean_per_object_average_precision']:.3f} | {r['box_ap50']:.3f} |")
    print(f"wrote {out_dir}/ablations.json, ablations.png")
    return rows


if __name__ == "__main__":
    main()
