"""yolz on your own images: find objects, given a few reference pictures of each, in a scene.

    python detect.py --scene scene.png --refs mug1.png mug2.png mug3.png             # one object
    python detect.py --scene scene.png --refs-dir refs/ --out found.png             # refs/NAME/*.png each

Prints the detections as JSON ({"objects": [{"name", "detections": [{"box", "score"}]}]}, boxes
as x0, y0, x1, y1 in the scene's own pixels) and writes the scene with the boxes drawn (--out).
Any size and mode is accepted: RGBA is composited on grey (a transparent background is best
for references, as in training), greyscale is made RGB, and each image is letterboxed (padded
with grey to a square, aspect kept) and resized to the model's input. Each object's reference
embedding is computed once, and the scene backbone runs once for all objects.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

from boxes import detections  # noqa: E402
from data import GREY, DataError, composite_uint8  # noqa: E402
from evaluate import NMS_IOU, OPERATING_POINT_FILE, OPERATING_THRESHOLD, stored_threshold  # noqa: E402
from models import embed_objects, enable_compilation_cache, find_in_scene, load_run  # noqa: E402
from util import draw_boxes, io_error_line, palette, save_png, unit_interval  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_image(path):
    """Any image file -> (H, W, 4) uint8 RGBA (opaque unless the file has transparency), turned as
    its EXIF orientation says (as viewers show it), 16-bit greyscale scaled to 8 bits."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # convert("RGBA") would clip these to white
                grey = np.asarray(image, dtype=np.float64)
                high = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
                image = Image.fromarray(np.round(np.clip(grey / high, 0, 1) * 255).astype(np.uint8), "L")
            return np.asarray(image.convert("RGBA"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def letterbox(rgba, size):
    """(H, W, 4) uint8 -> ((size, size, 4) uint8, scale, (pad_x, pad_y)): the image scaled to fit,
    centred on a transparent square; a point p of the input is at p * scale + pad in the output."""
    h, w = rgba.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(rgba).resize((new_w, new_h), Image.BILINEAR))
    out = np.zeros((size, size, 4), dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    out[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return out, scale, (pad_x, pad_y)


def on_grey(rgba):
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8 composited on the training grey."""
    return composite_uint8(rgba, np.full(3, GREY, dtype=np.uint8))


def references(refs=None, refs_dir=None):
    """-> [(name, [paths])] from one object's reference paths or a folder of one sub-folder per
    object, with clear errors for what is missing."""
    if refs:
        return [("object", list(refs))]
    if not os.path.isdir(refs_dir):
        raise DataError(f"--refs-dir {refs_dir}: no such directory")
    objects = []
    for name in sorted(os.listdir(refs_dir)):
        folder = os.path.join(refs_dir, name)
        if os.path.isdir(folder):
            paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
            if not paths:
                raise DataError(f"{folder} holds no reference images ({', '.join(IMAGE_SUFFIXES)})")
            objects.append((name, paths))
    if not objects:
        raise DataError(f"--refs-dir {refs_dir} has no sub-folders: give one folder of views per object")
    return objects


def detect(scene_path, objects, run_dir="pretrained", threshold=None, nms_iou=NMS_IOU, out=None):
    """Finds each object, objects = [(name, [reference image paths])], in the scene image ->
    {"scene", "run_dir", "threshold", "objects": [{"name", "references", "detections": [{"box",
    "score"}]}]}, boxes in the scene's own pixels; with out, also draws them into that image.
    threshold None: the run's own, chosen on its validation split by test.py."""
    run = load_run(run_dir)
    config = run.config
    if not config.priors:
        raise DataError(f"{run_dir} has no box head (its model_config.json has no priors): train one with "
                        "train.py --num-priors 3, or use pretrained")
    if threshold is None:
        threshold = stored_threshold(run_dir)
        if threshold is None:
            threshold = OPERATING_THRESHOLD
            print(f"{run_dir} has no {OPERATING_POINT_FILE}: reporting scores >= {threshold}; sh v3_test.sh "
                  f"{run_dir} chooses the run's own threshold on the validation split", file=sys.stderr)
    scene_rgba = read_image(scene_path)
    scene, scale, (pad_x, pad_y) = letterbox(scene_rgba, config.scene_size)
    scene = on_grey(scene)  # (S, S, 3) uint8, S = the model's scene size
    embeddings = []
    for name, paths in objects:
        views = np.stack([letterbox(read_image(p), config.view_size)[0] for p in paths])[None]  # (1, N, h, w, 4)
        backgrounds = np.full((1, len(paths), 3), GREY, dtype=np.uint8)
        embeddings.append(np.asarray(embed_objects(run.params, run.nt_params, views, backgrounds, run.models))[0])
    _, raw = find_in_scene(run.params, run.nt_params, scene, np.stack(embeddings), run.models)  # (C, G, G, A, 5)
    results = []
    for (name, paths), outputs in zip(objects, np.asarray(raw)):
        boxes, scores = detections(outputs, config.priors, config.stride, threshold, nms_iou)
        # back to the input's pixels: undo the padding and the scale, clip to the image
        boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale
        boxes = np.clip(boxes, 0, [scene_rgba.shape[1], scene_rgba.shape[0]] * 2).round().astype(int)
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes wholly on the padding go
        boxes, scores = boxes[inside], scores[inside]
        results.append({"name": name, "references": paths,
                        "detections": [{"box": b.tolist(), "score": round(float(s), 4)} for b, s in zip(boxes, scores)]})
    if out:
        colours = palette(len(results))
        image = on_grey(scene_rgba)
        for result, colour in zip(results, colours):
            found = result["detections"]
            image = draw_boxes(image, [d["box"] for d in found], [colour] * len(found),
                               [f"{result['name']} {d['score']:.2f}" for d in found])
        save_png(out, image)
    return {"scene": scene_path, "run_dir": run_dir, "threshold": threshold, "objects": results}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", required=True, help="the image to search")
    refs = parser.add_mutually_exclusive_group(required=True)
    refs.add_argument("--refs", nargs="+", help="reference views of one object")
    refs.add_argument("--refs-dir", help="one sub-folder of reference views per object, named by the folder")
    parser.add_argument("--run-dir", default="pretrained", help="a trained run with a box head (default: %(default)s)")
    parser.add_argument("--threshold", type=unit_interval,
                        help=f"lowest score reported (default: the run's, the best box F1 on its validation split: "
                        f"RUN_DIR/{OPERATING_POINT_FILE})")
    parser.add_argument("--nms-iou", type=unit_interval, default=NMS_IOU,
                        help="non-max suppression IoU (default: %(default)s)")
    parser.add_argument("--out", help="write the scene with the detections drawn here (PNG, or the format its "
                        "suffix names: .jpg, .webp, ...)")
    return parser.parse_args(argv)


def check_out(path):
    """A DataError unless an image can be written at path: checked before inference, so that a bad
    --out never costs the detections."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"--out {path} is a directory: give a file name, e.g. {os.path.join(path, 'found.png')}")
    if not os.path.isdir(directory):
        raise DataError(f"--out {path}: the directory {directory} does not exist: create it first")
    if not os.access(directory, os.W_OK):
        raise DataError(f"--out {path}: the directory {directory} is not writable")
    if os.path.splitext(path)[1].lower() not in Image.registered_extensions():
        raise DataError(f"--out {path}: unknown image type; end the name with .png or .jpg")


def main(argv=None):
    enable_compilation_cache()
    args = parse_args(argv)
    try:
        if args.out:
            check_out(args.out)
        result = detect(args.scene, references(args.refs, args.refs_dir), args.run_dir, args.threshold, args.nms_iou,
                        args.out)
    except DataError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(io_error_line(error))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
