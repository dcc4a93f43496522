#!/bin/sh
# The whole pipeline on the small default, on a fresh clone: makes .venv, renders the data, trains
# the CPU config and tests it on the unseen test objects.
# Runtime on a 2-core CPU: ~25 min, estimated from its parts (not measured end to end since the
# 3x3 box head): ~5 min rendering, ~17 min training (16 min 17 s for sweep.py's film-giou-head2
# seed 0 on 2026-11-24, 12 min 43 s with one 3x3 conv, 9 min 20 s without), ~3 min testing; add
# ~1 min where pip downloads.
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
