"""demo: train.py's defaults, the recipe sh v3_train.sh and sh repro.sh train.

    sh v3_train.sh                                   # = python train.py --config demo --run-dir runs/TIMESTAMP
    python train.py --config demo --run-dir runs/demo

Cost: 15 min 16 s on a 2-core AMD EPYC (3000 steps at 3.27 steps/s, six validations; sh repro.sh), data/small.
Result: test box AP50 (yolz's, pooled) 0.535, COCO AP50 0.570, on a fresh clone (sh repro.sh,
2-core AMD EPYC); over two seeds pooled box AP50 0.52-0.54, COCO AP50 0.55-0.56 (experiments/log.md).
"""

OVERRIDES = {}
