"""Box score = sigmoid(t_o)^(1 - a) * P(cell)^a, a from 0 (the box objectness alone: box_score
"objectness") through 0.5 (box_score "geometric") to 1 (the classifier's per-cell score alone):
does the classifier rank boxes better, and does it hold the absent queries' false alarms down?

    python -m experiments.box_score_mix --split validation --mix 0 0.25 0.5 0.75 1   # ~1 min an a, 2 cores
"""

import numpy as np

from boxes import decode
from evaluate import best_operating_point, box_figures, evaluate, evaluation_parser, load
from inference import FALSE_ALARM_BUDGET, query_embeddings
from models import enable_compilation_cache
from util import exits_in_one_line, unit_interval


def mixed_answer(run, a):
    """evaluate()'s answer(batch) with each box scored objectness^(1 - a) * P(its cell)^a."""
    config = run.config

    def answer(batch):
        probs, raw = run.find(batch["scene"], query_embeddings(run, batch))
        mixed = []
        for scene_probs, scene_raw in zip(probs, raw):
            row = []
            for p, r in zip(scene_probs, scene_raw):
                boxes, objectness = decode(r, config.priors, config.stride, cells=config.box_cells)
                row.append((boxes, objectness ** (1 - a) * np.repeat(p.reshape(-1), len(config.priors)) ** a))
            mixed.append(row)
        return probs, mixed

    return answer


def main(argv=None):
    parser = evaluation_parser(__doc__)
    parser.set_defaults(split="validation")
    parser.add_argument("--mix", type=unit_interval, nargs="+", default=[0, 0.25, 0.5, 0.75, 1],
                        help="values of a compared")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        run, split = load(args.run_dir, args.data_dir, args.split)
    rows = []
    for a in args.mix:
        pred = evaluate(split, mixed_answer(run, a), num_views=run.options["num_views"], num_absent=args.absent_queries,
                        min_score=args.min_score, desc=f"a={a:g}")
        figures = box_figures(pred, None)  # None: its own threshold
        best = best_operating_point(figures["box_operating_points"])
        rows.append({"a": a, "box_ap50": figures["box_ap50"], "best_f1": best["f1"]})
        print(f"{args.run_dir} {args.split} a={a:.2f}: box AP50 {figures['box_ap50']:.3f}, "
              f"AP[.50:.95] {figures['box_ap50_95']:.3f}, recall {figures['box_recall_at_false_alarm_budget']:.3f} at "
              f"{FALSE_ALARM_BUDGET} false alarms per absent query; best box F1 {best['f1']:.3f} (score "
              f"{best['threshold']}: recall {best['recall']:.3f}, {best['absent_false_positives_per_query']:.2f} "
              "false alarms)", flush=True)
    return rows


if __name__ == "__main__":
    main()
