#!/bin/sh
# The whole pipeline on the small default, on a fresh clone: makes .venv, renders the data, trains
# the CPU config and tests it on the unseen test objects.
# Runtime on a 2-core CPU: ~30 min end to end: 26 min 16 s measured on a fresh clone before the
# robustness splits test_backlit, test_relit and test_everyday (2-core AMD EPYC: 6 min 33 s
# rendering, 15 min 16 s training configs/demo.py (3.27 steps/s), ~4 min for the evaluation suite,
# the rest installing and compiling), which add 1 min 46 s of rendering (measured) and ~2 min of
# evaluation (estimated). That run: test box AP50 0.535 (pooled; COCO 0.570).
# Result: data/small/, runs/<timestamp>/ (curves, weights) and runs/<timestamp>/test/index.html;
# ends with test.py's headline figures on the unseen objects and the path of index.html.
set -e
cd "$(dirname "$0")"

: "${VENV:=.venv}"
: "${RUN_DIR:=runs/repro_$(date +%Y%m%d_%H%M%S)}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
export PYTHON="$VENV/bin/python" RUN_DIR
sh generate_split_chunk_data.sh
sh v3_train.sh
sh v3_test.sh "$RUN_DIR"
