"""demo: train.py's defaults, the recipe sh v3_train.sh and sh repro.sh train.

    sh v3_train.sh                                   # = python train.py --config demo --run-dir runs/TIMESTAMP
    python train.py --config demo --run-dir runs/demo

Cost: 12 min 05 s on a 2-core AMD EPYC (3000 steps, six validations; sh repro.sh, 2026-12-05), data/small.
Result: test box AP50 (yolz's, pooled) 0.530, COCO AP50 0.576, on a fresh clone (sh repro.sh,
2-core AMD EPYC; an earlier one 0.535 and 0.570); over two seeds pooled box AP50 0.52-0.54, COCO AP50 0.55-0.56 (experiments/log.md).
"""

OVERRIDES = {}
