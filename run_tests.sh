#!/bin/sh
# Runs the test suite: creates .venv if missing, installs requirements*.txt, runs pytest.
# Runtime on a 2-core CPU: 8 min 48 s measured on a fresh clone (CI=true bash .ci/run; ~1.3 min
# installing, gradio and the ONNX packages included; pytest 7 min 29 s for 251 tests).
# Result: pytest's summary line, e.g. "N passed"; the exit status is pytest's.
set -e
cd "$(dirname "$0")"

: "${VENV:=.venv}"
: "${PYTEST_ARGS:=-q}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt \
  -r requirements-tracking.txt -r requirements-demo.txt -r requirements-onnx.txt  # optional for users; their tests run
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-export.txt  # as its header says
exec "$VENV/bin/python" -m pytest $PYTEST_ARGS tests
