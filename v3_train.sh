#!/bin/sh
# Trains the embedding and scene models jointly on the small profile with the CPU model config.
# Runtime on a 2-core CPU: ~17 min (16 min 17 s measured 2026-11-24 with two 3x3 convs in the box
# head, sweep.py's film-giou-head2 seed 0 run alone: 3000 steps at ~3.3 steps/s, six validations,
# compiling; 12 min 43 s with one conv, 7-9 min without the 3x3 head).
# Result: runs/<timestamp>/ with weights, metrics.jsonl, loss.png, validation.png, debug/*.png;
# validation AP (and box AP50) on unseen objects well above a constant guess (docs/training.md).
set -e
cd "$(dirname "$0")"

# Each value below is train.py's default (a test checks); change one here for your runs, or
# set it in the environment: STEPS=6000 sh v3_train.sh. python train.py --help says what each does.

: "${DATA_DIR:=data/small}"
: "${RUN_DIR:=runs/$(date +%Y%m%d_%H%M%S)}"
: "${MODEL_CONFIG:=cpu}"              # cpu, seed (the original's sizes, needs PROFILE=full data) or a JSON file
: "${STEPS:=3000}"
: "${SCENES_PER_STEP:=1}"              # B, split over all devices (a multiple of their number)
: "${NUM_OBJECTS:=16}"                # C
: "${NUM_VIEWS:=4}"                   # N
: "${OPTIMIZER:=adam}"
: "${LEARNING_RATE:=1e-3}"
: "${SCHEDULE:=cosine}"
: "${WARMUP_STEPS:=100}"
: "${CONTRASTIVE_LOSS_WEIGHT:=1.0}"
: "${CLASSIFIER_LOSS_WEIGHT:=100.0}"
: "${TEMPERATURE:=1.0}"
: "${CONTRASTIVE_REDUCTION:=mean}"    # mean or sum (the original's) over a scene's objects
: "${EMBEDDING_BATCH_NORM:=batch}"    # batch, or object: each object's N views apart (the original's)
: "${FOCAL_ALPHA:=0.5}"
: "${FOCAL_GAMMA:=0.0}"               # 0: binary cross-entropy (with alpha 0.5); 2: the original's focal loss
: "${DENSE_INITIALIZER:=glorot_uniform}"  # or truncated_normal (the original's), of the embedding's two dense layers
: "${MATCHING:=film}"                # film: the embedding also scales every decoder layer; add: the original's
: "${NUM_PRIORS:=3}"                  # A box priors per cell (k-means on the training boxes); 0: no box head
: "${BOX_LOSS_WEIGHT:=1.0}"
: "${BOX_IGNORE_IOU:=0.0}"            # predictions overlapping an instance by more: not background (YOLOv3: 0.5)
: "${BOX_OBJECTNESS:=iou}"            # the responsible prediction's target: iou (its box's IoU, YOLOv2), or one
: "${BOX_COORDINATES:=giou}"          # giou: 1 - the generalized IoU of the box with the instance's; yolo: YOLOv2's
: "${BOX_CELLS:=1}"                   # cells responsible per instance: 1 (its centre's), or 3 (+ 2 neighbours)
: "${BOX_HEAD_CONVS:=2}"              # 3x3 convs before the box outputs (YOLOv3's heads); 0: cell by cell
: "${BOX_SCORE:=geometric}"           # a box's score: geometric mean of its objectness and its cell's P(object)
: "${PRESENCE_POWER:=0.0}"            # ... times the query's peak P(object) to this power (pretrained/: 4)
: "${ABSENT_QUERIES_PER_SCENE:=4}"    # K objects NOT in the scene queried per episode (learn "not here")
: "${ABSENT_CANDIDATES:=0}"           # K' > K: query the K of K' absent objects nearest the scene's (hard)
: "${SCENE_ZOOM:=1.0}"                # Z: training scenes zoomed by a factor from [1/Z, Z]; 1: as rendered
: "${SCENE_ZOOM_DIRECTION:=both}"     # both, or out: factors from [1/Z, 1] only (a camera farther, never nearer)
: "${SCENE_ZOOM_SHARE:=1.0}"          # share of training scenes zoomed; the others as rendered
: "${CROP_REFERENCES:=0.5}"           # share of objects whose anchors are cut from other scenes (0: all rendered)
: "${SEED:=0}"
: "${CHECKPOINT_EVERY:=500}"
: "${EVAL_EVERY:=500}"
: "${PYTHON:=.venv/bin/python}"
# Several hosts (docs/training.md, Scaling out): all three set, RUN_DIR on a filesystem they share.
: "${COORDINATOR_ADDRESS:=}"          # HOST:PORT of process 0
: "${NUM_PROCESSES:=}"
: "${PROCESS_ID:=}"

# XLA:CPU's buffers on transparent huge pages, not a page fault per 4 KB written: the train step
# 1.2-1.4x faster (util.huge_pages_env); GLIBC_TUNABLES=glibc.malloc.hugetlb=0 keeps them off
case "${GLIBC_TUNABLES:-}" in
  *glibc.malloc.hugetlb*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac

set -x
"$PYTHON" train.py --data-dir "$DATA_DIR" --run-dir "$RUN_DIR" --model-config "$MODEL_CONFIG" \
  --steps "$STEPS" --scenes-per-step "$SCENES_PER_STEP" --num-objects "$NUM_OBJECTS" --num-views "$NUM_VIEWS" \
  --optimizer "$OPTIMIZER" --learning-rate "$LEARNING_RATE" --schedule "$SCHEDULE" --warmup-steps "$WARMUP_STEPS" \
  --contrastive-loss-weight "$CONTRASTIVE_LOSS_WEIGHT" --classifier-loss-weight "$CLASSIFIER_LOSS_WEIGHT" \
  --temperature "$TEMPERATURE" --contrastive-reduction "$CONTRASTIVE_REDUCTION" \
  --embedding-batch-norm "$EMBEDDING_BATCH_NORM" --focal-alpha "$FOCAL_ALPHA" --focal-gamma "$FOCAL_GAMMA" \
  --dense-initializer "$DENSE_INITIALIZER" --matching "$MATCHING" \
  --num-priors "$NUM_PRIORS" --box-loss-weight "$BOX_LOSS_WEIGHT" --box-ignore-iou "$BOX_IGNORE_IOU" \
  --box-objectness "$BOX_OBJECTNESS" --box-coordinates "$BOX_COORDINATES" --box-cells "$BOX_CELLS" \
  --box-head-convs "$BOX_HEAD_CONVS" --box-score "$BOX_SCORE" --presence-power "$PRESENCE_POWER" \
  --absent-queries-per-scene "$ABSENT_QUERIES_PER_SCENE" --absent-candidates "$ABSENT_CANDIDATES" \
  --crop-references "$CROP_REFERENCES" \
  --scene-zoom "$SCENE_ZOOM" --scene-zoom-direction "$SCENE_ZOOM_DIRECTION" --scene-zoom-share "$SCENE_ZOOM_SHARE" \
  --seed "$SEED" --checkpoint-every "$CHECKPOINT_EVERY" --eval-every "$EVAL_EVERY" \
  ${COORDINATOR_ADDRESS:+--coordinator-address "$COORDINATOR_ADDRESS"} \
  ${NUM_PROCESSES:+--num-processes "$NUM_PROCESSES"} ${PROCESS_ID:+--process-id "$PROCESS_ID"}
