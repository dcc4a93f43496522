"""yolz on your own images: find objects, given a few reference pictures of each, in scenes.

    python detect.py --scene scene.png --refs mug1.png mug2.png mug3.png             # one object
    python detect.py --scene scene.png --refs-dir refs/ --out found.png             # refs/NAME/*.png each
    python detect.py --scene photos/ --refs-dir refs/ --out found/                  # every image of a folder
    python detect.py --backend onnx --run-dir pretrained_onnx --scene scene.png --refs-dir refs/   # no JAX

Prints the detections as JSON ({"objects": [{"name", "detections": [{"box", "score"}]}]}, boxes
as x0, y0, x1, y1 in the scene's own pixels; a list of those for several scenes) and writes the
scene with the boxes drawn (--out). From Python: `Detector` below, which this CLI is a layer on.
Any size and mode is accepted: RGBA is composited on grey (a transparent background is best
for references, as in training), greyscale is made RGB, and each image is letterboxed (padded
with grey to a square, aspect kept) and resized to the model's input. Each object's reference
embedding is computed once, and the scene backbone runs once for all objects.

Two backends run the same inference (inference.py): jax, a run dir (models.Run), and onnx, a
dir export.py wrote (runtime.Exported), which needs only requirements-onnx.txt; neither is
imported unless chosen.
"""

import argparse
import collections.abc
import contextlib
import dataclasses
import json
import os
import stat
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402
from tqdm import tqdm  # noqa: E402

from inference import OPERATING_THRESHOLD, Inference, read_run_file  # noqa: E402
from util import (GREY, DataError, composite_uint8, draw_boxes, exits_in_one_line, palette, save_png,  # noqa: E402
                  upsample)

BACKENDS = ("jax", "onnx")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# the longer side an image is worked at: the model sees 320-640 pixels (twice that in the pyramid),
# so more only costs memory (a 12000x12000 scene would take gigabytes)
MAX_IMAGE_SIDE = 2048
ORIENTATION = 0x0112  # the EXIF tag


def regular_file(path):
    """A DataError unless path is a file that can be read to its end (not a folder, a pipe, a device
    or a dangling link: opening a pipe would wait forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not an image file (a folder, a pipe or a device)")


@contextlib.contextmanager
def opened(path):
    """Image.open with every way a file can fail as a DataError naming it; an image over Pillow's
    decompression-bomb limit is refused, and one under it but over its warning is read quietly
    (MAX_IMAGE_SIDE bounds what is kept of it)."""
    regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS} pixels, too large to read safely: downscale it "
                        f"to {MAX_IMAGE_SIDE} pixels or so on its longer side") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def read_image(path, max_side=None):
    """Any image file -> (H, W, 4) uint8 RGBA (opaque unless the file has transparency), turned as
    its EXIF orientation says (as viewers show it), 16-bit greyscale scaled to 8 bits, and reduced
    as it is decoded to max_side (default MAX_IMAGE_SIDE) on its longer side (image_size gives the
    file's own size)."""
    max_side = max_side or MAX_IMAGE_SIDE
    with opened(path) as image:
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.BILINEAR)  # a JPEG decoded at 1/2, 1/4 or 1/8 first
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # convert("RGBA") would clip these to white
            grey = np.asarray(image, dtype=np.float64)
            high = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
            image = Image.fromarray(np.round(np.clip(grey / high, 0, 1) * 255).astype(np.uint8), "L")
        return np.asarray(image.convert("RGBA"))


def image_size(path):
    """An image file's (width, height) as viewers show it (its EXIF orientation applied), from its header."""
    with opened(path) as image:
        turned = image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
        return image.size[::-1] if turned else image.size


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


def as_rgba(image):
    """A path, or a (H, W) / (H, W, 3) / (H, W, 4) uint8 array -> (H, W, 4) uint8 RGBA, reduced to
    MAX_IMAGE_SIDE on its longer side."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4) uint8, not {array.shape} "
                        f"{array.dtype}")
    if not array.size:
        raise DataError(f"an image array of {array.shape[1]}x{array.shape[0]} pixels: give an image")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.shape[2] == 3:
        array = np.concatenate([array, np.full(array.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    if max(array.shape[:2]) > MAX_IMAGE_SIDE:
        image = Image.fromarray(array)
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.BILINEAR)
        array = np.asarray(image)
    return array


class Detector:
    """yolz from Python: loads a run once, then finds objects in any number of scenes.

        from detect import Detector
        detector = Detector("pretrained")    # or Detector("pretrained_onnx", backend="onnx"): export.py's
        found = detector.find("scene.png", {"mug": ["mug1.png", "mug2.png"]})
        found["mug"]["boxes"], found["mug"]["scores"]  # (n, 4) int x0, y0, x1, y1 in the scene's pixels; (n,)
        found["mug"]["heatmap"]  # (H, W) float32 P(object) per cell, at the scene's size

    Scenes and reference views are paths or uint8 arrays ((H, W), RGB or RGBA), any size (worked at
    MAX_IMAGE_SIDE at most: a larger scene's heatmap is at that size, its boxes in its own pixels).
    An object is given by a list of its views, or by `detector.embed(views)` computed once for many
    scenes. settings: inference.Inference's fields (threshold, nms_iou, box_score, presence_power,
    flips, pyramid_scales, pyramid_auto) overriding the run's own; a threshold the run has not chosen
    for them is the one chosen without flips, else 0.2, with a note on stderr. A bad argument is a
    DataError (a ValueError) naming it.
    """

    def __init__(self, run_dir="pretrained", backend="jax", **settings):
        self.run_dir = run_dir
        self.settings = settings
        # each backend imported only when chosen: JAX and Keras take seconds to import, and the ONNX
        # runtime's environment (requirements-onnx.txt) has neither
        if backend == "onnx":
            try:
                import runtime
            except ModuleNotFoundError as missing:
                raise DataError(f"the onnx backend needs {missing.name}: pip install -r "
                                "requirements-onnx.txt") from None
            load, self.run_file = runtime.Exported, runtime.read_export(run_dir)["inference"]
        elif backend == "jax":
            import models
            models.enable_compilation_cache()
            load, self.run_file = models.load_run, read_run_file(run_dir)
        else:
            raise DataError(f"backend {backend!r}: give one of {', '.join(BACKENDS)}")
        # the run's settings read once (every call's resolve against them), a bad one refused before the slow load
        self.inference = self.resolved(settings, quiet=True)
        self.model = load(run_dir)
        self.config = self.model.config
        if not self.config.priors:
            raise DataError(f"{run_dir} has no box head (its model_config.json has no priors): train one with "
                            "train.py --num-priors 3, or use pretrained")
        self.inference = self.resolved(settings)

    @property
    def threshold(self):
        return self.inference.threshold

    def resolved(self, settings, quiet=False):
        """The run's Inference with `settings` over it, its threshold resolved (see the class)."""
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(Inference)})
        if unknown:
            raise DataError(f"{unknown[0]}: no inference setting; give one of "
                            f"{', '.join(f.name for f in dataclasses.fields(Inference))}")
        inference = Inference.from_run_file(self.run_file, **settings)
        if inference.threshold is None and inference.flips:
            inference = dataclasses.replace(inference, threshold=Inference.from_run_file(
                self.run_file, **{**settings, "flips": False}).threshold)
            if inference.threshold is not None and not quiet:
                print(f"{self.run_dir} has no operating threshold for flips: using the one without; python test.py "
                      f"--run-dir {self.run_dir} --split validation --flips --choose-threshold chooses one",
                      file=sys.stderr)
        if inference.threshold is None:
            inference = dataclasses.replace(inference, threshold=OPERATING_THRESHOLD)
            if not quiet:
                print(f"{self.run_dir} has no operating threshold for these settings: reporting scores >= "
                      f"{OPERATING_THRESHOLD}; sh v3_test.sh {self.run_dir} chooses the run's own on the validation "
                      "split", file=sys.stderr)
        return inference

    def embed(self, views, name="views"):
        """A list of reference views (paths or arrays) -> the object's (E,) float32 embedding."""
        if isinstance(views, (str, os.PathLike)) or (isinstance(views, np.ndarray) and views.ndim < 4):
            raise DataError(f"{name}: one {'path' if isinstance(views, (str, os.PathLike)) else 'image'}, not a list "
                            "of views: give [view, ...]")
        try:
            views = list(views)
        except TypeError:
            raise DataError(f"{name}: give a list of the object's views (paths or image arrays)") from None
        if not views:
            raise DataError(f"{name}: an object needs at least one reference view")
        boxed = np.stack([letterbox(as_rgba(v), self.config.view_size)[0] for v in views])[None]  # (1, N, h, w, 4)
        return self.model.embed(boxed, np.full((1, len(views), 3), GREY, dtype=np.uint8))[0]

    def embeddings(self, objects):
        """{name: views or embedding} -> (C, E) float32, each embedding checked."""
        if not isinstance(objects, collections.abc.Mapping) or not objects:
            raise DataError(f"objects: give a non-empty dict {{name: views or embedding}}, not {objects!r:.60}")
        out = []
        for name, value in objects.items():
            if isinstance(value, np.ndarray) and value.ndim == 1:
                if value.dtype.kind != "f" or value.shape != (self.config.embedding_dim,):
                    raise DataError(f"objects[{name!r}]: an embedding is ({self.config.embedding_dim},) float, as "
                                    f"detector.embed returns, not {value.shape} {value.dtype}")
                if not np.isfinite(value).all():
                    raise DataError(f"objects[{name!r}]: the embedding holds NaN or infinity")
                out.append(value.astype(np.float32))
            else:
                out.append(self.embed(value, f"objects[{name!r}]"))
        return np.stack(out)

    def find(self, scene, objects, size=None, **settings):
        """One scene (path or array) and {name: views or embedding} -> {name: {"boxes": (n, 4) int,
        "scores": (n,) float, "heatmap": (h, w) float32}}, boxes best first; the scene backbone runs
        once for all objects. settings: as the constructor's, for this call (None: the detector's).
        size: the (width, height) the boxes are given in (default: the scene's own; read_image's
        reduced array with image_size(path) gives the file's pixels)."""
        settings = {k: v for k, v in settings.items() if v is not None}
        inference = self.resolved({**self.settings, **settings}, quiet=True) if settings else self.inference
        embeddings = self.embeddings(objects)  # (C, E)
        rgba = as_rgba(scene)
        if size is None:
            size = image_size(scene) if isinstance(scene, (str, os.PathLike)) else np.shape(scene)[1::-1]
        boxed, scale, (pad_x, pad_y) = letterbox(rgba, self.config.scene_size)
        probs, candidates = inference.find(self.model, on_grey(boxed)[None], embeddings[None])
        h, w = rgba.shape[:2]
        inner = (slice(pad_y, pad_y + max(1, round(h * scale))), slice(pad_x, pad_x + max(1, round(w * scale))))
        to_size = np.array([size[0] / w, size[1] / h] * 2)
        found = {}
        for name, cells, (boxes, scores) in zip(objects, probs[0], candidates[0]):
            boxes, scores = inference.detections(boxes, scores)
            # back to the input's pixels: undo the padding and the scale, clip to the image
            boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale * to_size
            boxes = np.clip(boxes, 0, [size[0], size[1]] * 2).round().astype(int)
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes wholly on the padding go
            square = upsample(cells.astype(np.float32), self.config.scene_size)[inner]  # the padding cut off
            found[name] = {"boxes": boxes[inside], "scores": scores[inside],
                           "heatmap": np.asarray(Image.fromarray(square, "F").resize((w, h), Image.NEAREST))}
        return found


def draw(scene, found, size=None):
    """(H, W, 4) uint8 scene and find()'s answer -> (H, W, 3) uint8 with the boxes, one colour per
    object; size: the (width, height) find() gave the boxes in, if not the scene's."""
    image = on_grey(scene)
    to_scene = 1.0 if size is None else np.array([scene.shape[1] / size[0], scene.shape[0] / size[1]] * 2)
    for (name, result), colour in zip(found.items(), palette(len(found))):
        image = draw_boxes(image, (result["boxes"] * to_scene).round().astype(int).tolist(),
                           [colour] * len(result["boxes"]), [f"{name} {s:.2f}" for s in result["scores"]])
    return image


def detect_scenes(detector, scene_paths, objects, embeddings, outs=None, progress=False, results=None):
    """detect.py's output per scene: {"scene", "run_dir", "threshold", "objects": [{"name",
    "references", "detections": [{"box", "score"}]}]}, the boxes drawn to outs[i] where given,
    appended to `results` as each scene is done. With several scenes, one that cannot be read is
    skipped with a warning (its entry: {"scene", "error"})."""
    results = [] if results is None else results
    for i, path in enumerate(tqdm(scene_paths, desc="scenes", unit="scene", disable=not progress)):
        try:
            scene, size = read_image(path), image_size(path)
        except DataError as error:
            if len(scene_paths) == 1:
                raise
            tqdm.write(f"warning: skipped {error}", file=sys.stderr)
            results.append({"scene": path, "error": str(error)})
            continue
        if max(size) > MAX_IMAGE_SIDE:
            tqdm.write(f"{path}: {size[0]}x{size[1]}, worked at {scene.shape[1]}x{scene.shape[0]} (the model sees "
                       f"{detector.config.scene_size}); boxes in the file's pixels"
                       + (", the picture at the smaller size" if outs else ""), file=sys.stderr)
        found = detector.find(scene, embeddings, size=size)
        results.append({"scene": path, "run_dir": detector.run_dir, "threshold": detector.threshold, "objects": [
            {"name": name, "references": paths,
             "detections": [{"box": b.tolist(), "score": round(float(s), 4)}
                            for b, s in zip(found[name]["boxes"], found[name]["scores"])]}
            for name, paths in objects]})
        if outs:
            save_png(outs[i], draw(scene, found, size))
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", required=True, nargs="+",
                        help="the image(s) to search, or folders of them (every image file inside)")
    refs = parser.add_mutually_exclusive_group(required=True)
    refs.add_argument("--refs", nargs="+", help="reference views of one object")
    refs.add_argument("--refs-dir", help="one sub-folder of reference views per object, named by the folder")
    parser.add_argument("--run-dir", default="pretrained", help="a trained run with a box head, or with --backend onnx "
                        "what export.py made of one (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="jax", help="jax, or onnx: onnxruntime without JAX "
                        "(pip install -r requirements-onnx.txt) on export.py's files (default: %(default)s)")
    Inference.add_flags(parser)
    parser.add_argument("--out", help="one scene: write it with the detections drawn here (PNG, or the format its "
                        "suffix names: .jpg, .webp, ...); several: a new or empty directory for NAME.png each")
    return parser.parse_args(argv)


def scene_paths(scenes):
    """--scene's files and folders -> the image paths, in order; a DataError for what is missing."""
    paths = []
    for item in scenes:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise DataError(f"--scene {item}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif not os.path.exists(item):
            raise DataError(f"--scene {item}: no such file or folder")
        else:
            paths.append(item)
    return paths


def check_out(path, inputs):
    """A DataError unless an image can be written at path, and path is none of the inputs: checked
    before inference, so that a bad --out never costs the detections nor overwrites a scene."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"--out {path} is a directory: give a file name, e.g. {os.path.join(path, 'found.png')}")
    if not os.path.isdir(directory):
        raise DataError(f"--out {path}: the directory {directory} does not exist: create it first")
    if not os.access(directory, os.W_OK):
        raise DataError(f"--out {path}: the directory {directory} is not writable")
    if os.path.splitext(path)[1].lower() not in Image.registered_extensions():
        raise DataError(f"--out {path}: unknown image type; end the name with .png or .jpg")
    check_not_input(path, inputs)


def check_not_input(path, inputs):
    """A DataError if path is (or links to) one of the input images."""
    if os.path.realpath(path) in {os.path.realpath(p) for p in inputs}:
        raise DataError(f"--out {path} is one of the input images, which it would overwrite: give another name")


OUT_MARKER = ".made-by-yolz-detect"  # in an --out directory detect.py made: only such a one is written into again


def out_paths(out_dir, paths, inputs):
    """--out DIR for several scenes -> DIR/NAME.png per scene; the dir is made (with its marker) if
    new, and refused if it holds files detect.py did not write, two scenes share a name, or a name
    is one of the inputs."""
    names = [os.path.splitext(os.path.basename(p))[0] + ".png" for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"--out {out_dir}: several scenes would write {twice[0]}: give scenes with distinct names")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"--out {out_dir} is a file: with several scenes give a new or empty directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, OUT_MARKER)):
        raise DataError(f"--out {out_dir} holds files detect.py did not write: give a new or empty directory")
    outs = [os.path.join(out_dir, n) for n in names]
    for out in outs:
        check_not_input(out, inputs)
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, OUT_MARKER), "a").close()
    return outs


def main(argv=None):
    args = parse_args(argv)
    results, paths, single = [], [], True

    def interrupted():
        if results and not single:
            print(json.dumps(results, indent=1))
        return (f"interrupted: {len(results)} of {len(paths)} scenes done"
                + (" (their detections printed above)" if results and not single else ""))

    with exits_in_one_line(interrupted):
        paths = scene_paths(args.scene)
        single = len(args.scene) == 1 and not os.path.isdir(args.scene[0])
        objects = references(args.refs, args.refs_dir)
        inputs = paths + [path for _, refs in objects for path in refs]
        outs = None
        if args.out and single:
            check_out(args.out, inputs)
            outs = [args.out]
        detector = Detector(args.run_dir, args.backend, **Inference.from_flags(args))
        embeddings = {name: detector.embed(refs, name) for name, refs in objects}
        if args.out and not single:
            outs = out_paths(args.out, paths, inputs)
        detect_scenes(detector, paths, objects, embeddings, outs, progress=not single, results=results)
    result = results[0] if single else results
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
