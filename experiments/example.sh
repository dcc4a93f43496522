#!/bin/sh
# The README's example detection: a test-split scene (objects never seen in training) searched for
# three of its objects, given 4 reference views each, by detect.py with the pretrained model.
#   sh experiments/example.sh     # needs data/small (sh generate_split_chunk_data.sh); ~15 s
#   OUT=/tmp/onnx.png FLAGS="--backend onnx --run-dir pretrained_onnx" sh experiments/example.sh   # export.py's
# Result: docs/detection_example.png (or OUT), and detect.py's JSON on stdout.
set -e
cd "$(dirname "$0")/.."

: "${DATA_DIR:=data/small}"
: "${SCENE:=5}"                       # index of the test scene
: "${PYTHON:=.venv/bin/python}"
: "${OUT:=docs/detection_example.png}"
: "${FLAGS:=}"                        # more detect.py flags
REFS=$(mktemp -d)
trap 'rm -rf "$REFS"' EXIT

"$PYTHON" - "$DATA_DIR" "$SCENE" "$REFS" <<'PY'
import os, sys
from PIL import Image
from data import Split
data_dir, index, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
split = Split(data_dir, "test")
scene = split.scene(index)
Image.fromarray(scene["rgb"]).save(os.path.join(out, "scene.png"))
for obj_id in scene["obj_ids"][:3]:
    os.makedirs(os.path.join(out, "refs", f"object_{obj_id}"))
    for i, view in enumerate(split.views(obj_id)[:4]):
        Image.fromarray(view).save(os.path.join(out, "refs", f"object_{obj_id}", f"{i}.png"))
PY
# shellcheck disable=SC2086  # FLAGS: several words
"$PYTHON" detect.py --scene "$REFS/scene.png" --refs-dir "$REFS/refs" --out "$OUT" $FLAGS
