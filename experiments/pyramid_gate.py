"""test.py --pyramid-auto's gate, chosen and checked. Each split's scenes are answered without and
with the pyramid (inference.PYRAMID_SCALES); a scene's gain is how much the pyramid raises its
median query's best box score (inference.median_gain, on the detections kept for AP, as
--pyramid-auto decides on all candidates: the same but for scores under the min score). A gate
takes the pyramid's detections for scenes whose gain is above it. Chosen on validation +
validation_shift (the validation objects near and far): the largest sum of their pooled box AP50,
and of the gates that reach it, the middle one. Then checked on test, test_shift and test with
references cut from scenes, at the run's operating threshold, with the spread of the scenes:
test_shift's box AP50 over test's, and the gate's change on test, over resamplings of each
split's scenes (seed 0).

    python -m experiments.pyramid_gate          # ~6 min on 2 cores
"""

import dataclasses

import numpy as np

from boxes import visible
from evaluate import box_figures, evaluate, evaluation_parser, load
from inference import OPERATING_THRESHOLD, PYRAMID_SCALES, Inference, median_gain
from metrics import detection_average_precision, match_detections
from models import enable_compilation_cache
from util import exits_in_one_line, positive_int

GATES = tuple(float(g) for g in np.round(np.arange(0, 0.0801, 0.0025), 4))


def answered(args, split_name, references="renders"):
    """-> (Predictions without the pyramid, the same with it, (S,) gains)."""
    run, split = load(args.run_dir, args.data_dir, split_name)
    inference = Inference.for_run(args.run_dir, **Inference.from_flags(args))
    plain, pyramid = (evaluate(split, dataclasses.replace(inference, pyramid_scales=scales, pyramid_auto=False)
                               .answer(run),
                               num_views=run.options["num_views"], num_absent=args.absent_queries,
                               references=references, min_score=args.min_score, nms_iou=inference.nms_iou,
                               desc=f"{split_name} {references} {'pyramid' if scales else 'plain'}")
                      for scales in ((), PYRAMID_SCALES))
    gains = np.array([median_gain(p, q) for p, q in zip(plain.detections, pyramid.detections)])
    return plain, pyramid, gains


def gated(answers, gate):
    """-> the Predictions whose scenes take the pyramid's detections where their gain is above gate
    (inf: none do, -inf: all), and the share of scenes that do."""
    plain, pyramid, gains = answers
    far = gains > gate
    detections = [q if f else p for p, q, f in zip(plain.detections, pyramid.detections, far)]
    return dataclasses.replace(plain, detections=detections), far.mean()


def gated_figures(answers, gate, threshold):
    """-> (share of scenes enlarged, box_figures) of gated()."""
    pred, share = gated(answers, gate)
    return share, box_figures(pred, threshold)


def scene_hits(answers, gate):
    """-> per scene (scores, IoU >= 0.5 hits, true boxes) of every query's detections, gated()."""
    pred, _ = gated(answers, gate)
    out = []
    for s, row in enumerate(pred.detections):
        found = [(b, sc, visible(pred.boxes[s, i])) for i, (b, sc) in enumerate(row)]
        out.append((np.concatenate([sc for _, sc, _ in found]),
                    np.concatenate([match_detections(b, sc, t, 0.5) for b, sc, t in found]),
                    sum(len(t) for _, _, t in found)))
    return out


def resampled_ap50(hits, picks):
    """Pooled box AP50 of the scenes at indices picks (each (S,) int: a resampling) -> (R,)."""
    return np.array([detection_average_precision(np.concatenate([hits[i][0] for i in pick]),
                                                 np.concatenate([hits[i][1] for i in pick]),
                                                 sum(hits[i][2] for i in pick)) for pick in picks])


def line(name, share, figures):
    return (f"{name}: pyramid in {share:.0%} of scenes, box AP50 {figures['box_ap50']:.3f}, AP "
            f"{figures['box_ap50_95']:.3f}, recall {figures['box_recall']:.3f} at "
            f"{figures['absent_false_positives_per_query']:.3f} false alarms per absent query, recall within the "
            f"budget {figures['box_recall_at_false_alarm_budget']:.3f}")


def main(argv=None):
    parser = evaluation_parser(__doc__, split=False)
    parser.add_argument("--resamples", type=positive_int, default=1000, help="resamplings of the scenes for the spread")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    with exits_in_one_line():
        threshold = Inference.for_run(args.run_dir, **Inference.from_flags(args)).threshold
        for split_name in ("validation", "validation_shift", "test", "test_shift"):
            load(args.run_dir, args.data_dir, split_name)  # each split there, before the first is answered
    threshold = OPERATING_THRESHOLD if threshold is None else threshold
    near, far = answered(args, "validation"), answered(args, "validation_shift")
    sums = {}
    for gate in (np.inf, *GATES, -np.inf):
        (near_share, near_fig), (far_share, far_fig) = (gated_figures(a, gate, threshold) for a in (near, far))
        if gate in GATES:
            sums[gate] = near_fig["box_ap50"] + far_fig["box_ap50"]
        label = "never" if gate == np.inf else "always" if gate == -np.inf else gate
        print(f"gate {label}: box AP50 validation {near_fig['box_ap50']:.3f} (pyramid in {near_share:.0%} of scenes), "
              f"validation_shift {far_fig['box_ap50']:.3f} ({far_share:.0%})")
    best = max(sums.values())
    plateau = [g for g, s in sums.items() if s >= best - 1e-3]
    chosen = plateau[len(plateau) // 2]
    print(f"chosen: {chosen} (the middle of {plateau}, box AP50 sums within 0.001 of {best:.3f})")
    tested = {}
    for name, references in (("test", "renders"), ("test_shift", "renders"), ("test", "crops")):
        tested[name, references] = answers = answered(args, name, references)
        for gate, label in ((np.inf, "plain"), (chosen, f"gate {chosen}"), (-np.inf, "always")):
            print(line(f"{name} {references} {label}", *gated_figures(answers, gate, threshold)))
    rng = np.random.default_rng(0)
    near, far = tested["test", "renders"], tested["test_shift", "renders"]
    near_picks, far_picks = (rng.integers(0, len(a[2]), (args.resamples, len(a[2]))) for a in (near, far))
    plain_ap = resampled_ap50(scene_hits(near, np.inf), near_picks)
    gated_ap = resampled_ap50(scene_hits(near, chosen), near_picks)
    with np.errstate(divide="ignore", invalid="ignore"):  # a resampling with no hit at all: no ratio
        ratio = resampled_ap50(scene_hits(far, chosen), far_picks) / plain_ap
    for label, values in (("test_shift with the gate / test plain", ratio),
                          ("test: gate - plain", gated_ap - plain_ap)):
        low, high = np.percentile(values, [2.5, 97.5])
        print(f"{label}, {args.resamples} resamplings of the scenes: 95% between {low:.3f} and {high:.3f}")
    return chosen


if __name__ == "__main__":
    main()
