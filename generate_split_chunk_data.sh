#!/bin/sh
# Renders the train / validation / test splits (objects 0-799 / 800-899 / 900-999) with pybullet
# into chunks under $OUT_DIR, and the robustness splits (docs/data.md): test_shift and
# validation_shift (cameras outside the training ranges), test_backlit (references lit from
# behind), test_relit (scenes under a low, tinted light) and test_everyday (pybullet's everyday
# meshes among test objects); then a contact sheet of a few training scenes.
# Runtime on a 2-core CPU: small profile ~8 min, 718 MB (6 min 33 s measured for the first five
# splits, 1 min 46 s for the last three); full profile (the original's scale) ~1.3 h (estimated
# from the small one, ~30 GB). Killed? Run it again: it carries on.
# Result: $OUT_DIR/SPLIT/manifest.json for each split and $OUT_DIR/preview_train.png.
# On K machines sharing $OUT_DIR: SHARD_INDEX=i SHARD_COUNT=K on machine i (docs/training.md, Speed and scaling out).
set -e
cd "$(dirname "$0")"

: "${PROFILE:=small}"                 # small (CPU demo: 320x320 scenes, 40x40 grid) or full (640x640, 80x80)
: "${OUT_DIR:=data/$PROFILE}"
: "${SEED:=0}"
: "${WORKERS:=$(nproc)}"
: "${SHARD_INDEX:=0}"                 # this machine's share of the chunks, 0..SHARD_COUNT-1
: "${SHARD_COUNT:=1}"                 # machines rendering into one $OUT_DIR
: "${TRAIN_IDS:=0-799}"
: "${VALIDATION_IDS:=800-899}"
: "${TEST_IDS:=900-999}"
: "${APPEARANCE:=fixed}"              # fixed (the original's light and reference camera) or random (docs/data.md)
# Left empty, these take the profile's value (python generate_data.py --help lists them).
: "${NUM_TRAIN_SCENES:=}"
: "${NUM_VALIDATION_SCENES:=}"
: "${NUM_TEST_SCENES:=}"
: "${NUM_TEST_SHIFT_SCENES:=}"        # empty: as many as the test split
: "${NUM_VALIDATION_SHIFT_SCENES:=}"  # empty: as many as the validation split
: "${VIEWS_PER_OBJECT:=}"
: "${PYTHON:=.venv/bin/python}"

set -x
"$PYTHON" generate_data.py --out-dir "$OUT_DIR" --profile "$PROFILE" --seed "$SEED" --workers "$WORKERS" \
  --shard-index "$SHARD_INDEX" --shard-count "$SHARD_COUNT" \
  --train-ids "$TRAIN_IDS" --validation-ids "$VALIDATION_IDS" --test-ids "$TEST_IDS" --appearance "$APPEARANCE" \
  ${NUM_TRAIN_SCENES:+--num-train-scenes "$NUM_TRAIN_SCENES"} \
  ${NUM_VALIDATION_SCENES:+--num-validation-scenes "$NUM_VALIDATION_SCENES"} \
  ${NUM_TEST_SCENES:+--num-test-scenes "$NUM_TEST_SCENES"} \
  ${NUM_TEST_SHIFT_SCENES:+--num-test-shift-scenes "$NUM_TEST_SHIFT_SCENES"} \
  ${NUM_VALIDATION_SHIFT_SCENES:+--num-validation-shift-scenes "$NUM_VALIDATION_SHIFT_SCENES"} \
  ${VIEWS_PER_OBJECT:+--views-per-object "$VIEWS_PER_OBJECT"}
if [ -f "$OUT_DIR/train/manifest.json" ]; then  # not yet, while other shards are rendering
  "$PYTHON" preview.py --data-dir "$OUT_DIR" --split train --num-scenes 3
fi
