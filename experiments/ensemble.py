"""What averaging two runs (seeds of one recipe) would give: both answer every episode; P(object)
is averaged cell by cell, and each (cell, prior) slot's decoded box and objectness across the runs
(their priors differ a little, k-means per run, but come sorted by size, so slot k is the same
size of box in both), the box scored as the first run's inference settings score it
(inference.Inference.score). Then as test.py: the threshold chosen on validation by the
false-alarm budget (evaluate.budget_threshold), the test split reported at it; plainly and with
both runs' outputs averaged over mirror images too (--flips). Given the same run twice it gives
that run's own test.py figures.

    python -m experiments.ensemble --run-dir pretrained --other-run-dir runs/pretrained_seed1   # ~2 min, 2 cores
"""

import numpy as np

from boxes import decode
from data import Split
from evaluate import box_figures, cell_figures, evaluate, evaluation_parser
from inference import Inference, averaged_over_flips, query_embeddings
from models import check_scene_size, enable_compilation_cache, load_run
from util import exits_in_one_line


def run_outputs(run, batch, flips):
    """One run's (B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs for an episode batch."""
    objects = query_embeddings(run, batch)
    probs, raw = run.find(batch["scene"], objects)
    if flips:
        probs, raw = averaged_over_flips(probs, raw, batch["scene"], lambda scenes: run.find(scenes, objects))
    return probs, raw


def averaged_answer(runs, inference, flips):
    """evaluate()'s answer(batch) for the runs averaged -> (P(object), [B][Q] of (boxes, scores))."""
    def answer(batch):
        outputs = [run_outputs(run, batch, flips) for run in runs]
        probs = np.mean([p for p, _ in outputs], axis=0)
        found = [[None] * probs.shape[1] for _ in range(probs.shape[0])]
        for s, q in np.ndindex(probs.shape[:2]):
            decoded = [decode(raw[s, q], run.config.priors, run.config.stride, cells=run.config.box_cells)
                       for run, (_, raw) in zip(runs, outputs)]
            objectness = np.mean([o for _, o in decoded], axis=0)  # (G*G*A,), cells row-major, priors last
            found[s][q] = (np.mean([b for b, _ in decoded], axis=0), inference.score(objectness, probs[s, q]))
        return probs, found

    return answer


def main(argv=None):
    parser = evaluation_parser(__doc__, split=False, run_dir_help="the first run averaged (whose inference "
                               "settings score the boxes)")
    parser.add_argument("--other-run-dir", help="the second run averaged (default: the first again)")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    run_dirs = (args.run_dir, args.other_run_dir or args.run_dir)
    with exits_in_one_line():
        inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
        runs = [load_run(run_dir) for run_dir in run_dirs]  # once: a run loaded anew would compile anew
        splits = {name: Split(args.data_dir, name) for name in ("validation", "test")}
        for split in splits.values():
            check_scene_size(split, runs[0].config)
    print(f"{' + '.join(run_dirs)} averaged, {args.data_dir}")
    rows = []
    for flips in (False, True):
        threshold = None  # validation's figures choose it
        for split_name, split in splits.items():
            pred = evaluate(split, averaged_answer(runs, inference, flips), num_views=runs[0].options["num_views"],
                            num_absent=args.absent_queries, min_score=args.min_score, nms_iou=inference.nms_iou,
                            desc=f"{split_name}{' flips' if flips else ''}")
            figures = {**cell_figures(pred), **box_figures(pred, threshold)}
            threshold = figures["box_threshold"]
            rows.append({"split": split_name, "flips": flips, "box_ap50": figures["box_ap50"]})
            print(f"{split_name:10s} flips {flips!s:5s}: per-cell AP {figures['average_precision']:.3f}, pooled box "
                  f"AP50 {figures['box_ap50']:.3f}, AP[.50:.95] {figures['box_ap50_95']:.3f}; at {threshold}: "
                  f"recall {figures['box_recall']:.3f}, false positives per absent query "
                  f"{figures['absent_false_positives_per_query']:.3f}; recall within the budget "
                  f"{figures['box_recall_at_false_alarm_budget']:.3f}")
    return rows


if __name__ == "__main__":
    main()
