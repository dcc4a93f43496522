#!/bin/sh
# Zero-shot test: evaluates a trained run on objects never seen in training (the test split,
# objects 900-999) and draws y_true / y_pred overlays. With no argument: pretrained/.
#   sh v3_test.sh [RUN_DIR]
# The evaluation suite (runs.EVALUATIONS, those the data has): validation (where a run tested for
# the first time chooses its operating threshold), then the robustness evaluations, the test
# objects under conditions outside the training ranges: test_shift (cameras farther and lower;
# also with the far-camera pyramid where a scene asks for it), test_crops (references cut out of
# other scenes), test_backlit (references lit from behind), test_relit (scenes relit),
# test_everyday (everyday meshes among them); and test.
# Runtime on a 2-core CPU: ~6 min on the small profile (8 evaluations of 48 scenes x 16 objects).
# Result: RUN_DIR/NAME/ for each, with metrics.json, pr_curve.png, pairs/*.png and index.html (open
# RUN_DIR/test/index.html: its robustness table compares them all); RUN_DIR/inference.json holds
# the chosen threshold.
set -e
cd "$(dirname "$0")"

RUN_DIR="${1:-${RUN_DIR:-pretrained}}"
: "${DATA_DIR:=data/small}"
: "${NUM_VIEWS:=0}"                   # N reference views per object; 0: the N the run trained with
: "${NUM_PICTURES:=48}"               # (scene, object) pairs drawn, spread from worst to best
: "${BATCH_SIZE:=8}"                  # scenes per eval step
: "${FLAGS:=}"                        # more test.py flags (inference settings: --flips, --threshold 0.3, ...)
: "${ROBUSTNESS:=1}"                  # 0: the test split alone
: "${PYTHON:=.venv/bin/python}"

set -x
# shellcheck disable=SC2086  # FLAGS is a list of flags
if [ "$ROBUSTNESS" = 1 ]; then
  "$PYTHON" test.py --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" --num-views "$NUM_VIEWS" \
    --num-pictures "$NUM_PICTURES" --batch-size "$BATCH_SIZE" --suite $FLAGS
else
  "$PYTHON" test.py --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" --num-views "$NUM_VIEWS" \
    --num-pictures "$NUM_PICTURES" --batch-size "$BATCH_SIZE" $FLAGS
fi
