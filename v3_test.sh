#!/bin/sh
# Zero-shot test: evaluates a trained run on the test split (objects 900-999, never seen in
# training or validation) and draws y_true / y_pred overlays. With no argument: pretrained/.
#   sh v3_test.sh [RUN_DIR]
# Runtime on a 2-core CPU: ~40 s on the small profile (48 scenes x 16 objects).
# Result: RUN_DIR/test/metrics.json, pr_curve.png, pairs/*.png and index.html (open it in a browser).
set -e
cd "$(dirname "$0")"

RUN_DIR="${1:-${RUN_DIR:-pretrained}}"
: "${DATA_DIR:=data/small}"
: "${SPLIT:=test}"
: "${NUM_VIEWS:=0}"                   # N reference views per object; 0: the N the run trained with
: "${NUM_PICTURES:=48}"               # (scene, object) pairs drawn, spread from worst to best
: "${BATCH_SIZE:=8}"                  # scenes per eval step
: "${THRESHOLD:=0.2}"                 # operating score of a box detection
: "${PYTHON:=.venv/bin/python}"

set -x
"$PYTHON" test.py --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" --split "$SPLIT" --num-views "$NUM_VIEWS" \
  --num-pictures "$NUM_PICTURES" --batch-size "$BATCH_SIZE" --threshold "$THRESHOLD"
