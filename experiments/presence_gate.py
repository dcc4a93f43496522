"""The presence gate's power, chosen: a run's boxes scored its box_score's way times their
query's peak P(object) to the power p, for each p: pooled box AP50 and AP[.50:.95], and the box
recall (IoU 0.5) where the absent queries' detections are held to the false-alarm budget per
query, at the threshold that holds them there on this split (evaluate.box_figures).

    python -m experiments.presence_gate --split validation --powers 0 1 2 4 8   # ~20 s a power, 2 cores
"""

import dataclasses

from evaluate import box_figures, evaluate, evaluation_parser, load
from inference import Inference
from models import enable_compilation_cache
from util import exits_in_one_line, non_negative_float


def main(argv=None):
    parser = evaluation_parser(__doc__)
    parser.add_argument("--powers", type=non_negative_float, nargs="+", default=[0, 1, 2, 4, 8],
                        help="presence_power values compared")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
        run, split = load(args.run_dir, args.data_dir, args.split)
    rows = []
    for power in args.powers:
        gated = dataclasses.replace(inference, presence_power=power)
        pred = evaluate(split, gated.answer(run), num_views=run.options["num_views"],
                        num_absent=args.absent_queries, min_score=args.min_score, nms_iou=gated.nms_iou,
                        desc=f"power {power:g}")
        figures = box_figures(pred, None)  # None: this split's own threshold for the budget
        rows.append({"power": power, **{k: figures[k] for k in ("box_ap50", "box_ap50_95",
                                                                "box_recall_at_false_alarm_budget")}})
        print(f"{args.run_dir} {args.split} power {power:g}: box AP50 {figures['box_ap50']:.3f}, AP[.50:.95] "
              f"{figures['box_ap50_95']:.3f}; recall within the false-alarm budget "
              f"{figures['box_recall_at_false_alarm_budget']:.3f} (score > "
              f"{figures['box_threshold_at_false_alarm_budget']:.3f})", flush=True)
    return rows


if __name__ == "__main__":
    main()
