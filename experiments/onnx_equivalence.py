"""The ONNX export against the JAX run it was made from, on a split: the largest difference in
P(object) and box outputs over its episodes, and the evaluation figures test.py reports by both
backends side by side (the same episodes, inference settings and threshold).

    python export.py pretrained /tmp/pretrained_onnx
    python -m experiments.onnx_equivalence --run-dir pretrained --export-dir /tmp/pretrained_onnx   # ~1 min, 2 cores
"""

import numpy as np

from evaluate import (box_figures, cell_figures, coco_figures, coco_json, evaluate, evaluation_parser, load,
                      object_embeddings, retrieval_recall)
from inference import Inference, query_embeddings
from runtime import Exported
from util import DataError, exits_in_one_line

FIGURES = ("average_precision", "retrieval_recall@1", "box_ap50", "box_ap50_present_only", "coco_ap50", "coco_ap",
           "box_recall", "absent_false_positives_per_query", "box_recall_at_false_alarm_budget")


def largest_output_differences(run, exported, split, num_views, batch_size=8):
    """The largest |ONNX - JAX| of the embeddings, P(object) and raw box outputs over the split's
    episodes (one per scene, every object of it)."""
    worst = dict.fromkeys(("embeddings", "p_object", "box_outputs"), 0.0)

    def answer(batch):
        embeddings = query_embeddings(run, batch)  # both find with JAX's: each graph compared on its own
        outputs = [(query_embeddings(model, batch) if model is exported else embeddings,
                    *model.find(batch["scene"], embeddings)) for model in (run, exported)]
        for name, a, b in zip(worst, *outputs):
            worst[name] = max(worst[name], float(np.max(np.abs(a - b))))
        return outputs[0][1], None

    evaluate(split, answer, num_views=num_views, batch_size=batch_size)
    return worst


def figures_by_backend(run, exported, split, inference, num_views, num_absent, min_score):
    """test.py's figures of the split by each backend, the same inference settings and threshold ->
    {backend: {figure: value}}."""
    out = {}
    for backend, model in (("jax", run), ("onnx", exported)):
        pred = evaluate(split, inference.answer(model), num_views=num_views, num_absent=num_absent,
                        min_score=min_score, nms_iou=inference.nms_iou, desc=backend)
        figures = {**cell_figures(pred, retrieval_recall(object_embeddings(split, model, num_views))),
                   **box_figures(pred, inference.threshold), **coco_figures(*coco_json(pred))}
        out[backend] = {k: figures[k] for k in FIGURES}
    return out


def main(argv=None):
    parser = evaluation_parser(__doc__)
    parser.add_argument("--export-dir", required=True, help="what export.py made of --run-dir")
    args = parser.parse_args(argv)
    with exits_in_one_line():
        run, split = load(args.run_dir, args.data_dir, args.split)
        exported = Exported(args.export_dir)
        if exported.config.priors != run.config.priors:
            raise DataError(f"--export-dir {args.export_dir} was not exported from {args.run_dir}: its priors differ")
        inference = Inference.from_run_file(exported.run_file, **Inference.from_flags(args))
        if inference.threshold is None:
            raise DataError(f"{args.run_dir} has no operating threshold for these settings: choose one first (sh "
                            "v3_test.sh), or give --threshold")
        num_views = run.options["num_views"]
        worst = largest_output_differences(run, exported, split, num_views)
        print(f"{args.split}, {split.num_scenes} scenes, largest |ONNX - JAX|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
        by_backend = figures_by_backend(run, exported, split, inference, num_views, args.absent_queries,
                                        args.min_score)
        print(f"{'figure':<36} {'jax':>8} {'onnx':>8} {'|diff|':>8}")
        for name in FIGURES:
            a, b = by_backend["jax"][name], by_backend["onnx"][name]
            print(f"{name:<36} {a:8.4f} {b:8.4f} {abs(a - b):8.1e}")
    return worst, by_backend


if __name__ == "__main__":
    main()
