#!/bin/sh
# The whole pipeline on the small default, on a fresh clone: makes .venv, renders the data, trains
# the CPU config and tests it on the unseen test objects.
# Runtime on a 2-core CPU: ~15 min (17 min measured on a fresh clone, pip cache warm, before the
# test_shift split and the robustness tests were added, ~2.5 min more, and before the train step
# got faster, ~5 min less): ~5 min rendering, ~7 min training, ~3 min testing; add ~1 min where
# pip downloads.
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
