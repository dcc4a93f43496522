# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/presence_gate.py SPLIT P,P,... RUN_DIR [RUN_DIR ...]
# (~20 s per run on 2 cores).
"""The presence gate (ModelConfig.presence_power), chosen: each run's boxes scored box_score's way
times their query's peak P(object) to the power p, for each p: pooled box AP50 and AP[.50:.95], and
the box recall (IoU 0.5) where the absent queries' detections are held to FALSE_ALARM_BUDGET per
query, at the threshold that holds them there on this split (evaluate.box_figures). Each run
answers once, without the gate, and is gated after: the gate keeps the order within a query, so
the same detections as a gated answer's, but for those it takes under MIN_SCORE, dropped here."""
import dataclasses
import sys

import numpy as np

from evaluate import MIN_SCORE, box_figures, evaluate, load, model_answer


def presence_gated(pred, power):
    """Predictions answered with presence_power 0 -> as answered with `power`."""
    detections = []
    for row, probs in zip(pred.detections, pred.probs):
        gated = [(boxes, scores * float(np.max(p)) ** power) for (boxes, scores), p in zip(row, probs)]
        detections.append([(boxes[scores >= MIN_SCORE], scores[scores >= MIN_SCORE]) for boxes, scores in gated])
    return dataclasses.replace(pred, detections=detections)


split_name, powers, run_dirs = sys.argv[1], [float(p) for p in sys.argv[2].split(",")], sys.argv[3:]
for run_dir in run_dirs:
    run, split = load(run_dir, "data/small", split_name)
    ungated = dataclasses.replace(run.models, config=dataclasses.replace(run.config, presence_power=0.0))
    pred = evaluate(split, model_answer(ungated, run.params, run.nt_params), num_views=run.options["num_views"],
                    num_absent=4, desc=run_dir)
    for power in powers:
        figures = box_figures(presence_gated(pred, power), None)  # None: this split's own threshold for the budget
        print(f"{run_dir} {split_name} power {power:g}: box AP50 {figures['box_ap50']:.3f}, AP[.50:.95] "
              f"{figures['box_ap50_95']:.3f}; recall within the false-alarm budget "
              f"{figures['box_recall_at_false_alarm_budget']:.3f} (score > "
              f"{figures['box_threshold_at_false_alarm_budget']:.3f})", flush=True)
