# Run from the repo root: PYTHONPATH=. .venv/bin/python docs/pyramid_gate.py (~5 min on 2 cores).
"""test.py --pyramid-auto's gate, chosen and checked. Each split's scenes are answered without and
with the pyramid (evaluate.PYRAMID_SCALES); a scene's gain is how much the pyramid raises its median
query's best box score (evaluate.median_gain, on the detections kept for AP, as --pyramid-auto
decides on all candidates: the same but for scores under MIN_SCORE). A gate takes the pyramid's
detections for scenes whose gain is above it. Chosen on validation + validation_shift (the
validation objects near and far): the largest sum of their pooled box AP50, and of the gates that
reach it, the middle one. Then checked on test, test_shift and test with references cut from
scenes, at the run's operating threshold."""
import dataclasses

import numpy as np

from evaluate import PYRAMID_SCALES, box_figures, evaluate, load, median_gain, model_answer, stored_threshold

RUN_DIR, DATA_DIR = "pretrained", "data/small"
GATES = tuple(float(g) for g in np.round(np.arange(0, 0.0301, 0.0025), 4))


def answered(split_name, references="renders"):
    """-> (Predictions without the pyramid, the same with it, (S,) gains)."""
    run, split = load(RUN_DIR, DATA_DIR, split_name)
    plain, pyramid = (evaluate(split, model_answer(run.models, run.params, run.nt_params, scales),
                               num_views=run.options["num_views"], num_absent=4, references=references,
                               desc=f"{split_name} {references} {'pyramid' if scales else 'plain'}")
                      for scales in ((), PYRAMID_SCALES))
    gains = np.array([median_gain(p, q) for p, q in zip(plain.detections, pyramid.detections)])
    return plain, pyramid, gains


def gated(answers, gate, threshold):
    """box_figures of the scenes that take the pyramid where their gain is above gate (None: none do)."""
    plain, pyramid, gains = answers
    far = np.zeros(len(gains), bool) if gate is None else gains > gate
    detections = [q if f else p for p, q, f in zip(plain.detections, pyramid.detections, far)]
    return far.mean(), box_figures(dataclasses.replace(plain, detections=detections), threshold)


def line(name, share, figures):
    return (f"{name}: pyramid in {share:.0%} of scenes, box AP50 {figures['box_ap50']:.3f}, AP "
            f"{figures['box_ap50_95']:.3f}, recall {figures['box_recall']:.3f} at "
            f"{figures['absent_false_positives_per_query']:.3f} false alarms per absent query, recall within the "
            f"budget {figures['box_recall_at_false_alarm_budget']:.3f}")


threshold = stored_threshold(RUN_DIR)
near, far = answered("validation"), answered("validation_shift")
sums = {}
for gate in (None, *GATES, -np.inf):
    (near_share, near_fig), (far_share, far_fig) = gated(near, gate, threshold), gated(far, gate, threshold)
    if gate in GATES:
        sums[gate] = near_fig["box_ap50"] + far_fig["box_ap50"]
    label = "never" if gate is None else "always" if np.isinf(gate) else gate
    print(f"gate {label}: box AP50 validation {near_fig['box_ap50']:.3f} (pyramid in {near_share:.0%} of scenes), "
          f"validation_shift {far_fig['box_ap50']:.3f} ({far_share:.0%})")
best = max(sums.values())
plateau = [g for g, s in sums.items() if s >= best - 1e-3]
chosen = plateau[len(plateau) // 2]
print(f"chosen: {chosen} (the middle of {plateau}, box AP50 sums within 0.001 of {best:.3f})")
for name, references in (("test", "renders"), ("test_shift", "renders"), ("test", "crops")):
    answers = answered(name, references)
    for gate, label in ((None, "plain"), (chosen, f"gate {chosen}"), (-np.inf, "always")):
        print(line(f"{name} {references} {label}", *gated(answers, gate, threshold)))
