#!/bin/sh
# Zero-shot test: evaluates a trained run on the test split (objects 900-999, never seen in
# training or validation) and draws y_true / y_pred overlays. With no argument: pretrained/.
#   sh v3_test.sh [RUN_DIR]
# Robustness first, where the data has a test_shift split: the test objects seen from cameras
# outside the training ranges (plainly, and with the far-camera pyramid where a scene asks for it:
# test.py --pyramid-auto), and the test split with reference views cut out of other scenes.
# A run tested for the first time chooses its operating threshold on the validation split.
# Runtime on a 2-core CPU: ~4 min on the small profile (5 evaluations of 48 scenes x 16 objects).
# Result: RUN_DIR/{validation,test_shift,test_shift_pyramid2_auto,test_crops,test}/ with metrics.json, pr_curve.png,
# pairs/*.png and index.html (open RUN_DIR/test/index.html: it compares them all);
# RUN_DIR/operating_point.json.
set -e
cd "$(dirname "$0")"

RUN_DIR="${1:-${RUN_DIR:-pretrained}}"
: "${DATA_DIR:=data/small}"
: "${SPLIT:=test}"
: "${NUM_VIEWS:=0}"                   # N reference views per object; 0: the N the run trained with
: "${NUM_PICTURES:=48}"               # (scene, object) pairs drawn, spread from worst to best
: "${BATCH_SIZE:=8}"                  # scenes per eval step
: "${THRESHOLD:=}"                    # operating box score; empty: the run's own (chosen on validation)
: "${ROBUSTNESS:=1}"                  # 0: the test split alone
: "${PYTHON:=.venv/bin/python}"

set -x
run_test() {
  "$PYTHON" test.py --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" --num-views "$NUM_VIEWS" \
    --num-pictures "$NUM_PICTURES" --batch-size "$BATCH_SIZE" ${THRESHOLD:+--threshold "$THRESHOLD"} "$@"
}
if [ "$ROBUSTNESS" = 1 ] && [ -f "$DATA_DIR/test_shift/manifest.json" ]; then
  run_test --split test_shift
  run_test --split test_shift --pyramid-auto
  run_test --split "$SPLIT" --references crops
fi
run_test --split "$SPLIT"
