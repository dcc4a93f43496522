# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/box_score_mix.py [RUN_DIR] [SPLIT] [A,A,...]
# (~1 min per a on 2 cores; default a: 0,0.25,0.5,0.75,1).
"""Box score = sigmoid(t_o)^(1 - a) * P(cell)^a, a from 0 (the box objectness alone: box_score
"objectness") through 0.5 (box_score "geometric") to 1 (the classifier's per-cell score alone):
does the classifier rank boxes better, and does it hold the absent queries' false alarms down?"""
import sys

import numpy as np

from boxes import decode
from evaluate import best_operating_point, box_figures, evaluate, load
from models import INFERENCE_KEYS, infer_batch

run_dir = sys.argv[1] if len(sys.argv) > 1 else "pretrained"
split_name = sys.argv[2] if len(sys.argv) > 2 else "validation"
run, split = load(run_dir, "data/small", split_name)
config = run.models.config
for a in map(float, (sys.argv[3] if len(sys.argv) > 3 else "0,0.25,0.5,0.75,1").split(",")):
    def answer(batch):
        probs, raw, _ = infer_batch(run.params, run.nt_params, {k: batch[k] for k in INFERENCE_KEYS}, run.models)
        probs, raw = np.asarray(probs), np.asarray(raw)
        mixed = []
        for scene_probs, scene_raw in zip(probs, raw):
            row = []
            for p, r in zip(scene_probs, scene_raw):
                boxes, objectness = decode(r, config.priors, config.stride, cells=config.box_cells)
                row.append((boxes, objectness ** (1 - a) * np.repeat(p.reshape(-1), len(config.priors)) ** a))
            mixed.append(row)
        return probs, mixed
    figures = box_figures(evaluate(split, answer, num_views=4, num_absent=4), None)  # None: its own threshold
    best = best_operating_point(figures["box_operating_points"])
    print(f"{run_dir} {split_name} a={a:.2f}: box AP50 {figures['box_ap50']:.3f}, "
          f"AP[.50:.95] {figures['box_ap50_95']:.3f}, recall {figures['box_recall_at_false_alarm_budget']:.3f} at "
          f"0.2 false alarms per absent query; best box F1 {best['f1']:.3f} (score {best['threshold']}: recall "
          f"{best['recall']:.3f}, {best['absent_false_positives_per_query']:.2f} false alarms)", flush=True)
