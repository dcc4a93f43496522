# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/ensemble.py (~2 min on 2 cores).
"""What averaging two seeds of the recipe would give (docs/results.md, A second seed): both runs
answer every episode; P(object) is averaged cell by cell, and each (cell, prior) slot's decoded box
and objectness across the runs (their priors differ a little, k-means per run, but come sorted by
size, so slot k is the same size of box in both), the box scored as config.box_score "geometric"
does, times the averaged P(object)'s peak to config.presence_power. Then as test.py: the threshold
chosen on validation by the false-alarm budget (evaluate.budget_threshold), the test split reported
at it; plainly and with both runs' outputs averaged over mirror images too (test.py --flips). With
RUN_DIRS the same run twice it gives that run's own test.py figures to the last digit (checked,
pretrained/)."""
import numpy as np

from boxes import decode
from data import Split
from evaluate import averaged_over_flips, box_figures, cell_figures, evaluate
from models import INFERENCE_KEYS, check_scene_size, find_in_scenes, infer_batch, load_run

RUN_DIRS = ("pretrained", "runs/pretrain_3000_18k_seed1")
DATA_DIR = "data/small"  # its validation and test splits are data/small_3000's


def run_outputs(run, batch, flips):
    """One run's (B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs for an episode batch."""
    probs, raw, objects = infer_batch(run.params, run.nt_params, {k: batch[k] for k in INFERENCE_KEYS}, run.models)
    if flips:
        probs, raw = averaged_over_flips(probs, raw, batch["scene"], lambda scenes: find_in_scenes(
            run.params, run.nt_params, scenes, objects, run.models))
    return np.asarray(probs), np.asarray(raw)


def averaged_answer(runs, flips):
    """evaluate()'s answer(batch) for the runs averaged -> (P(object), [B][Q] of (boxes, scores))."""
    def answer(batch):
        outputs = [run_outputs(run, batch, flips) for run in runs]
        probs = np.mean([p for p, _ in outputs], axis=0)
        found = [[None] * probs.shape[1] for _ in range(probs.shape[0])]
        for s, q in np.ndindex(probs.shape[:2]):
            decoded = [decode(raw[s, q], run.config.priors, run.config.stride, cells=run.config.box_cells)
                       for run, (_, raw) in zip(runs, outputs)]
            objectness = np.mean([o for _, o in decoded], axis=0)  # (G*G*A,), cells row-major, priors last
            cell_probs = np.repeat(probs[s, q].reshape(-1), len(runs[0].config.priors))
            presence = float(np.max(probs[s, q])) ** runs[0].config.presence_power
            found[s][q] = (np.mean([b for b, _ in decoded], axis=0), np.sqrt(objectness * cell_probs) * presence)
        return probs, found

    return answer


def main():
    runs = [load_run(run_dir) for run_dir in RUN_DIRS]  # once: a run loaded anew would compile anew
    if any((run.config.box_score, run.config.presence_power) != ("geometric", runs[0].config.presence_power)
           for run in runs):
        raise SystemExit(f"{RUN_DIRS}: averaged_answer scores boxes as box_score 'geometric' does, with one "
                         "presence_power; the runs score them otherwise")
    print(f"{' + '.join(RUN_DIRS)} averaged, {DATA_DIR}")
    for flips in (False, True):
        threshold = None  # validation's figures choose it
        for split_name in ("validation", "test"):
            split = Split(DATA_DIR, split_name)
            check_scene_size(split, runs[0].config)
            pred = evaluate(split, averaged_answer(runs, flips), num_views=runs[0].options["num_views"],
                            num_absent=4, desc=f"{split_name}{' flips' if flips else ''}")
            figures = {**cell_figures(pred), **box_figures(pred, threshold)}
            threshold = figures["box_threshold"]
            print(f"{split_name:10s} flips {flips!s:5s}: per-cell AP {figures['average_precision']:.3f}, pooled box "
                  f"AP50 {figures['box_ap50']:.3f}, AP[.50:.95] {figures['box_ap50_95']:.3f}; at {threshold}: "
                  f"recall {figures['box_recall']:.3f}, false positives per absent query "
                  f"{figures['absent_false_positives_per_query']:.3f}; recall within the budget "
                  f"{figures['box_recall_at_false_alarm_budget']:.3f}")


if __name__ == "__main__":
    main()
