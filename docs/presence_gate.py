# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/presence_gate.py SPLIT P,P,... RUN_DIR [RUN_DIR ...]
# (~20 s per run and power on 2 cores, each power compiling anew).
"""The presence gate (ModelConfig.presence_power), chosen: each run's boxes scored box_score's way
times their query's peak P(object) to the power p, for each p: pooled box AP50 and AP[.50:.95], and
the box recall (IoU 0.5) where the absent queries' detections are held to FALSE_ALARM_BUDGET per
query, at the threshold that holds them there on this split (evaluate.box_figures)."""
import dataclasses
import sys

from evaluate import box_figures, evaluate, load, model_answer

split_name, powers, run_dirs = sys.argv[1], [float(p) for p in sys.argv[2].split(",")], sys.argv[3:]
for run_dir in run_dirs:
    run, split = load(run_dir, "data/small", split_name)
    for power in powers:
        models = dataclasses.replace(run.models, config=dataclasses.replace(run.config, presence_power=power))
        pred = evaluate(split, model_answer(models, run.params, run.nt_params), num_views=run.options["num_views"],
                        num_absent=4)
        figures = box_figures(pred, None)  # None: this split's own threshold for the budget
        print(f"{run_dir} {split_name} power {power:g}: box AP50 {figures['box_ap50']:.3f}, AP[.50:.95] "
              f"{figures['box_ap50_95']:.3f}; recall within the false-alarm budget "
              f"{figures['box_recall_at_false_alarm_budget']:.3f} (score > "
              f"{figures['box_threshold_at_false_alarm_budget']:.3f})", flush=True)
