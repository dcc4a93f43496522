#!/bin/sh
# The whole pipeline on the small default, on a fresh clone: makes .venv, renders the data,
# trains the CPU config (and tests, once v3_test.sh exists).
# Runtime on a 2-core CPU: ~1 min installing + ~4 min rendering + ~10 min training.
# Result: data/small/ (with preview_train.png) and runs/<timestamp>/ (validation AP in
# metrics.jsonl, curves in validation.png).
set -e
cd "$(dirname "$0")"

: "${VENV:=.venv}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
PYTHON="$VENV/bin/python" sh generate_split_chunk_data.sh
for step in v3_train.sh v3_test.sh; do
  if [ -f "$step" ]; then PYTHON="$VENV/bin/python" sh "$step"; else echo "repro: $step does not exist yet, stopping here"; exit 0; fi
done
