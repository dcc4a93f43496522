#!/bin/sh
# Trains the embedding and scene models jointly: a recipe of configs/ (default: demo, train.py's
# defaults) on the small profile with the CPU model config.
# Runtime on a 2-core CPU: 15 min 16 s for demo in a fresh-clone sh repro.sh (3000 steps at 3.27 steps/s).
# Result: RUN_DIR (default runs/<timestamp>/) with weights, metrics.jsonl, loss.png,
# validation.png, debug/*.png; then sh v3_test.sh RUN_DIR tests it.
# Change a recipe by copying configs/demo.py to configs/mine.py and editing it (CONFIG=mine), or
# give any train.py flag in FLAGS: FLAGS="--learning-rate 3e-4 --num-views 8" sh v3_train.sh.
# python train.py --help lists every hyperparameter and its default.
set -e
cd "$(dirname "$0")"

: "${CONFIG:=demo}"                   # configs/CONFIG.py: the recipe (pretrained: the shipped model's)
: "${DATA_DIR:=data/small}"
: "${RUN_DIR:=runs/$(date +%Y%m%d_%H%M%S)}"
: "${STEPS:=}"                        # empty: the recipe's
: "${SEED:=}"                         # empty: the recipe's (0)
: "${FLAGS:=}"                        # more train.py flags, over the recipe's
: "${PYTHON:=.venv/bin/python}"
# Several hosts (docs/training.md, Speed and scaling out): all three set, RUN_DIR on a filesystem they share.
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
# shellcheck disable=SC2086  # FLAGS is a list of flags
"$PYTHON" train.py --config "$CONFIG" --data-dir "$DATA_DIR" --run-dir "$RUN_DIR" \
  ${STEPS:+--steps "$STEPS"} ${SEED:+--seed "$SEED"} $FLAGS \
  ${COORDINATOR_ADDRESS:+--coordinator-address "$COORDINATOR_ADDRESS"} \
  ${NUM_PROCESSES:+--num-processes "$NUM_PROCESSES"} ${PROCESS_ID:+--process-id "$PROCESS_ID"}
