"""How a trained run's outputs become detections: the one post-processor that evaluation,
`detect.Detector`, the demo and the baselines all call, so that they cannot disagree.

    inference = Inference.for_run("pretrained", flips=True)   # the run's settings, a flag's override
    answer = inference.answer(model)   # for evaluate.evaluate

`model` is either backend: a `models.Run` (JAX) or a `runtime.Exported` (ONNX, no JAX): anything
with a `config` (priors, stride, box_cells), `embed(views, backgrounds)` and `find(scenes,
embeddings)`. Everything here is numpy, so both backends share it.

Per query, the scene model gives P(object) per cell and raw box outputs per (cell, prior). They
are decoded to boxes (boxes.decode), each scored by `box_score` ("objectness", the box head's
own, YOLO's; or "geometric": its geometric mean with its cell's P(object)) times the query's
peak P(object) to `presence_power` (a query-wide "is it here at all"), optionally averaged over
the scene's mirror images (`flips`) and joined by the small boxes of a test-time scene pyramid
(`pyramid_scales`, in every scene or, `pyramid_auto`, where it raises the scene's scores); then
the boxes scoring at least `threshold` are kept after non-max suppression at `nms_iou`.

Each field of `Inference` is a flag of test.py, detect.py and app.py (`add_flags`). A run's
own settings live in RUN_DIR/inference.json: its box_score and presence_power, and the
operating thresholds chosen on its validation split (python test.py --split validation
--choose-threshold), one per way of scoring. Runs written before that file read their
model_config.json's and operating_point.json's keys.
"""

import argparse
import dataclasses
import itertools
import os

import numpy as np

from boxes import decode, select
from util import DataError, at_least_one, flag_field, non_negative_float, read_json, unit_interval, write_json_atomic

RUN_FILE = "inference.json"  # in a run dir: its settings and chosen operating points
LEGACY_POINT_FILE = "operating_point.json"  # where runs written before RUN_FILE keep their thresholds
OPERATING_THRESHOLD = 0.2  # the box score a run that has not chosen its own threshold reports at
NMS_IOU = 0.5
FALSE_ALARM_BUDGET = 0.2  # false alarms per absent query a run operates within: "not here" holds for 4 in 5
# The pyramid's scale for cameras farther than training's (chosen on validation_shift among 1.4,
# 1.7, 2 and 2.4), and pyramid_auto's gate: the rise in a scene's median best score above which a
# scene takes the pyramid's boxes (chosen on validation + validation_shift; docs/inference.md)
PYRAMID_SCALES = (2.0,)
PYRAMID_MIN_GAIN = 0.06
MAX_PYRAMID_SCALE, MAX_PYRAMID_LEVELS = 4.0, 3  # bounds on what a user may ask of it


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inference:
    """How outputs become detections; each field is a flag (--field-name). Built by keyword, each
    value checked as its flag would (a DataError naming it)."""

    box_score: str = flag_field("geometric", "a box's score: objectness (the box head's own, YOLO's) or geometric (the "
                                "geometric mean of that and its cell's P(object)); default: the run's",
                                choices=("objectness", "geometric"))
    presence_power: float = flag_field(0.0, "each box's score times its query's peak P(object) to this power (a "
                                       "query-wide 'is it here at all'; 0: no gate); default: the run's",
                                       type=non_negative_float)
    threshold: float | None = flag_field(None, "lowest box score reported; default: the run's, chosen on its "
                                         f"validation split to keep false alarms to {FALSE_ALARM_BUDGET} per absent "
                                         "object", type=unit_interval)
    nms_iou: float = flag_field(NMS_IOU, "non-max suppression IoU", type=unit_interval)
    flips: bool = flag_field(False, "average the outputs over the scene and its left-right and upside-down mirror "
                             "images (3x the time; the run's threshold for flips)")
    pyramid_scales: tuple = flag_field((), "also look for small boxes in the scene enlarged by these factors, tile by "
                                       "tile (e.g. 2: a camera farther than in training)", type=at_least_one,
                                       nargs="+", metavar="SCALE")
    pyramid_auto: bool = flag_field(False, f"the pyramid (of --pyramid-scales, else {PYRAMID_SCALES[0]:g}) only in "
                                    "scenes where it raises the median query's best box score by more than "
                                    f"{PYRAMID_MIN_GAIN}: for cameras of unknown distance")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "pyramid_scales":
                object.__setattr__(self, field.name, check_pyramid_scales(value))
            elif field.type is bool:
                object.__setattr__(self, field.name, bool(value))
            elif value is not None or field.default is not None:
                object.__setattr__(self, field.name, checked(field, value))

    # -- flags and the run's own settings --------------------------------------------------------

    @classmethod
    def add_flags(cls, parser):
        """Adds every field as a flag whose default is "not given" (from_flags tells them apart)."""
        for field in dataclasses.fields(cls):
            flag, meta = "--" + field.name.replace("_", "-"), dict(field.metadata)
            if field.type is bool:
                parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=meta["help"])
            else:
                parser.add_argument(flag, default=argparse.SUPPRESS, **{"type": str, **meta})
        return parser

    @classmethod
    def from_flags(cls, args):
        """An argparse Namespace -> {field: value} of the inference flags given."""
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}

    @classmethod
    def for_run(cls, run_dir, **given):
        """The run's own settings (RUN_DIR/inference.json, or an older run's files) with `given`
        overriding them; threshold, unless given, the run's operating point for this way of scoring
        (None before one is chosen: python test.py --split validation --choose-threshold)."""
        return cls.from_run_file(read_run_file(run_dir), **given)

    @classmethod
    def from_run_file(cls, stored, **given):
        """for_run from read_run_file's dict, for a caller that resolves several settings of one run."""
        inference = cls(**{**{k: stored[k] for k in RUN_SETTINGS}, **given})
        if inference.threshold is None:
            point = inference.operating_point(stored["operating_points"])
            inference = dataclasses.replace(inference, threshold=point and point["threshold"])
        return inference

    @property
    def scoring(self):
        """What an operating threshold is chosen for: the way boxes are scored."""
        return {"box_score": self.box_score, "presence_power": self.presence_power, "flips": self.flips}

    def operating_point(self, points):
        """The one of a run's operating points chosen with this way of scoring, or None."""
        return next((p for p in points if all(p.get(k) == v for k, v in self.scoring.items())), None)

    def store(self, run_dir, point):
        """Records an operating point chosen on validation with this way of scoring in the run's
        inference.json (replacing one chosen so before), the run's settings kept."""
        stored = read_run_file(run_dir)
        points = [p for p in stored["operating_points"] if p is not self.operating_point(stored["operating_points"])]
        write_json_atomic(os.path.join(run_dir, RUN_FILE), {**{k: stored[k] for k in RUN_SETTINGS},
                                                            "operating_points": [*points, {**self.scoring, **point}]})

    @property
    def pyramid(self):
        """-> (the pyramid's scales, its min_gain for with_pyramid): pyramid_auto without scales
        takes PYRAMID_SCALES and gates them by PYRAMID_MIN_GAIN."""
        scales = self.pyramid_scales or (PYRAMID_SCALES if self.pyramid_auto else ())
        return scales, PYRAMID_MIN_GAIN if self.pyramid_auto else None

    # -- the pipeline ----------------------------------------------------------------------------

    def score(self, objectness, cell_probs):
        """One query's (G*G*A,) box objectness (boxes.decode's order: cells row-major, priors last) and
        (G, G) P(object) -> its boxes' scores: box_score's way (the objectness, or its geometric mean
        with its cell's P(object)), times the query's peak P(object) to presence_power."""
        if self.box_score == "geometric":
            objectness = np.sqrt(objectness * np.repeat(np.asarray(cell_probs, float).reshape(-1),
                                                        len(objectness) // cell_probs.size))
        return objectness * float(np.max(cell_probs)) ** self.presence_power

    def scored(self, config, raw, probs):
        """(B, Q, G, G, A, 5) raw box outputs and (B, Q, G, G) P(object) -> [B][Q] of (every decoded
        box, its score)."""
        def query_boxes(r, p):
            boxes, objectness = decode(r, config.priors, config.stride, cells=config.box_cells)
            return boxes, self.score(objectness, p)

        return [[query_boxes(r, p) for r, p in zip(scene_raw, scene_probs)]
                for scene_raw, scene_probs in zip(raw, probs)]

    def candidates(self, config, probs, raw, scenes, rerun):
        """A batch's model outputs -> ((B, Q, G, G) P(object), [B][Q] of (every candidate box, score),
        or None without a box head). scenes: the (B, H, H, 3) uint8 scenes answered; rerun(scenes)
        -> (P(object), raw outputs) of other scenes for the same objects (flips, pyramid tiles)."""
        def flipped(probs, raw, scenes):  # the scene and the pyramid's tiles alike, so that their scores compare
            return averaged_over_flips(probs, raw, scenes, rerun) if self.flips else (probs, raw)

        probs, raw = flipped(probs, raw, scenes)
        probs = np.asarray(probs)
        if raw is None:
            return probs, None
        found = self.scored(config, np.asarray(raw), probs)
        scales, min_gain = self.pyramid
        if scales:
            def answer_tiles(tiles):
                tile_probs, tile_raw = flipped(*rerun(tiles), tiles)
                return self.scored(config, np.asarray(tile_raw), np.asarray(tile_probs))
            found = with_pyramid(found, scenes, scales, answer_tiles, config, min_gain)
        return probs, found

    def detections(self, boxes, scores, floor=None):
        """One query's candidates -> its detections: those scoring at least `floor` (default: the
        threshold), best first, after non-max suppression."""
        return select(boxes, scores, self.threshold if floor is None else floor, self.nms_iou)

    def answer(self, model):
        """An answer(batch) for evaluate.evaluate by a model (the module's docstring): a batch of
        episodes (INFERENCE_KEYS: (B, Q, N, h, w, 4) uint8 anchors on (B, Q, N, 3) backgrounds,
        (B, H, H, 3) uint8 scenes) -> candidates()."""
        def answer(batch):
            return self.find(model, batch["scene"], query_embeddings(model, batch))
        return answer

    def find(self, model, scenes, embeddings):
        """(B, H, H, 3) uint8 scenes and (B, C, E) object embeddings -> candidates()."""
        def rerun(other):
            return model.find(other, embeddings)
        return self.candidates(model.config, *rerun(scenes), scenes, rerun)


INFERENCE_KEYS = ("anchors", "anchor_backgrounds", "scene")  # what Inference.answer reads of a batch


def query_embeddings(model, batch):
    """A batch's (B, Q, N, h, w, 4) uint8 anchors on (B, Q, N, 3) backgrounds -> the (B, Q, E) embeddings
    of its queries by a model (the module's docstring)."""
    anchors = batch["anchors"]
    embeddings = model.embed(anchors.reshape((-1, *anchors.shape[2:])),
                             batch["anchor_backgrounds"].reshape((-1, *anchors.shape[2:3], 3)))
    return embeddings.reshape((*anchors.shape[:2], -1))


RUN_SETTINGS = ("box_score", "presence_power")  # what inference.json sets for a run; the rest are per call


def checked(field, value):
    """value as its field's flag would take it, or a DataError naming the field (its flag: the same
    name with dashes)."""
    choices = field.metadata.get("choices")
    if choices:
        if isinstance(value, str) and value in choices:
            return value
        raise DataError(f"{field.name}={value!r}: give one of {', '.join(choices)}")
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise argparse.ArgumentTypeError("x is not a number")
        return field.metadata["type"](str(value))
    except argparse.ArgumentTypeError as error:
        raise DataError(f"{field.name}={value!r}: give {str(error).split(' is not ', 1)[-1]}") from None


def check_pyramid_scales(scales):
    """A pyramid's scales as a tuple of floats, or a DataError unless there are at most
    MAX_PYRAMID_LEVELS of them, each from 1 to MAX_PYRAMID_SCALE: its work grows with the square of
    a scale (a scale of 4 answers 25 tiles)."""
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        scales = (float("nan"),)
    if len(scales) > MAX_PYRAMID_LEVELS or not all(1 <= s <= MAX_PYRAMID_SCALE for s in scales):
        given = f"{len(scales)} of them" if len(scales) > MAX_PYRAMID_LEVELS else ", ".join(f"{s:g}" for s in scales)
        raise DataError(f"pyramid scales (--pyramid-scales) {given}: give at most {MAX_PYRAMID_LEVELS} factors, each "
                        f"from 1 to {MAX_PYRAMID_SCALE:g} (2: a camera twice as far as in training)")
    return scales


# ---------------------------------------------------------------------------------------------
# the run's file


def read_run_file(run_dir):
    """RUN_DIR/inference.json checked -> {"box_score", "presence_power", "operating_points": [...]};
    a run written before it: its model_config.json's box_score ("objectness" when absent, as such
    configs were written before the key) and presence_power, and operating_point.json's thresholds
    (its top level without flips, its "flips" object with). A DataError naming a broken file."""
    path = os.path.join(run_dir, RUN_FILE)
    if os.path.exists(path):
        return read_run_settings(read_json(path), path, "restore it, or delete it and choose again: python test.py "
                                 f"--run-dir {run_dir} --split validation --choose-threshold")
    path = os.path.join(run_dir, "model_config.json")
    config = read_json(path) if os.path.exists(path) else {}
    settings = {"box_score": config.get("box_score", "objectness"), "presence_power": config.get("presence_power", 0.0)}
    return read_run_settings({**settings, "operating_points": legacy_points(run_dir, settings)}, path,
                             "restore the file train.py wrote")


def read_run_settings(stored, path, fix):
    """A run's inference settings as stored (inference.json's object; runtime.py's export.json holds
    one too) checked -> read_run_file's dict; a DataError naming `path`, then `fix` (what to do)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("operating_points", []), list):
        raise DataError(f"{path} is not a run's inference settings (an object with a list of operating_points): {fix}")
    points = stored.get("operating_points", [])
    defaults = {f.name: f.default for f in dataclasses.fields(Inference)}
    settings = {k: stored.get(k, defaults[k]) for k in RUN_SETTINGS}
    for point in points:
        threshold = point.get("threshold") if isinstance(point, dict) else None
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise DataError(f"{path}: operating point {point!r:.80} has no threshold from 0 to 1: {fix}")
    try:
        Inference(**settings)
    except DataError as error:
        raise DataError(f"{path}: {error}: {fix}") from None
    return {**settings, "operating_points": points}


def legacy_points(run_dir, settings):
    """An older run's operating_point.json as operating points of `settings`' way of scoring."""
    path = os.path.join(run_dir, LEGACY_POINT_FILE)
    if not os.path.exists(path):
        return []
    point = read_json(path)
    if not isinstance(point, dict) or not isinstance(point.get("flips", {}), dict):
        raise DataError(f"{path} is not an operating point (an object, with \"flips\" one too): restore it, or "
                        f"delete it and choose again: python test.py --run-dir {run_dir} --split validation "
                        "--choose-threshold")
    flips = point.pop("flips", None)
    return [{**settings, "flips": f, **p} for f, p in ((False, point), (True, flips)) if p and "threshold" in p]


# ---------------------------------------------------------------------------------------------
# test-time flips and the scene pyramid


def unmirrored(probs, raw, axis):
    """(B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs (or None) of scenes mirrored along
    their axis 1 (upside down) or 2 (left-right) -> the scenes' own: the cells mirrored back, and each
    centre's offset within its cell too, o -> 1 - o, whose logit is the negative (boxes.cell_offset is
    symmetric about 1/2)."""
    probs = np.flip(probs, axis + 1)
    if raw is None:
        return probs, None
    raw = np.flip(raw, axis + 1).copy()
    raw[..., 3 - axis] *= -1  # axis 2 (x): t_x, channel 1; axis 1 (y): t_y, channel 2
    return probs, raw


def averaged_over_flips(probs, raw, scenes, answer):
    """Test-time flips: the (B, Q, G, G) P(object) and (B, Q, G, G, A, 5) raw box outputs (or None) of
    the (B, H, W, 3) uint8 scenes averaged with those of the scenes mirrored left-right and upside
    down, mirrored back. answer(scenes) -> their (P(object), raw outputs)."""
    outputs = [(np.asarray(probs), None if raw is None else np.asarray(raw))]
    for axis in (2, 1):
        mirrored_probs, mirrored_raw = answer(np.ascontiguousarray(np.flip(scenes, axis)))
        outputs.append(unmirrored(np.asarray(mirrored_probs), None if mirrored_raw is None
                                  else np.asarray(mirrored_raw), axis))
    return (np.mean([p for p, _ in outputs], axis=0),
            None if raw is None else np.mean([r for _, r in outputs], axis=0))


def pyramid_tiles(size, tile):
    """Tiles of side `tile` across [0, size), overlapping by at least a quarter -> [(start, lo, hi)]:
    each tile answers for the boxes centred in its [lo, hi), and these cut [0, size) once."""
    n = 1 if size <= tile else int(np.ceil((size - tile) / (0.75 * tile))) + 1
    starts = np.linspace(0, size - tile, n).round().astype(int)
    cuts = [0, *((starts[:-1] + tile + starts[1:]) // 2), size]
    return [(int(start), int(cuts[i]), int(cuts[i + 1])) for i, start in enumerate(starts)]


def from_tile(boxes, core, max_side):
    """(n, 4) boxes in an enlarged scene's pixels -> (n,) bool: centred in a tile's core (x_lo, x_hi,
    y_lo, y_hi: pyramid_tiles) and with a side (the square root of the area) under max_side."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))
    return (cx >= core[0]) & (cx < core[1]) & (cy >= core[2]) & (cy < core[3]) & (side < max_side)


def enlarged_bilinear(images, size):
    """(B, H, H, C) uint8 -> (B, size, size, C) uint8 by bilinear interpolation between pixel centres,
    edges held (as jax.image.resize's "linear" enlarges), rounded."""
    h = images.shape[1]
    x = (np.arange(size) + 0.5) * h / size - 0.5
    lo = np.floor(x).astype(int)
    w = (x - lo).astype(np.float32)
    lo, hi = np.clip(lo, 0, h - 1), np.clip(lo + 1, 0, h - 1)
    f = images.astype(np.float32)
    rows = f[:, lo] * (1 - w)[:, None, None] + f[:, hi] * w[:, None, None]
    out = rows[:, :, lo] * (1 - w)[:, None] + rows[:, :, hi] * w[:, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def pyramid_boxes(scenes, scales, answer, config):
    """The boxes a test-time scene pyramid adds to the (B, H, H, 3) uint8 scenes -> [B][Q] of (boxes,
    scores) in the scenes' pixels. answer((B, H, H, 3) tiles) -> [B][Q] of (boxes, scores) in the tiles'
    pixels. Scenes enlarged by each of `scales` (> 1) are answered tile by tile at the model's own size
    (pyramid_tiles) and add only boxes smaller than the smallest prior at the scene's own size: as SNIP
    (Singh & Davis 2018) has each scale answer only for the sizes the model learned, so that a scene
    seen from farther than in training finds its small objects without the enlarged large ones
    turning into false alarms."""
    smallest = float(np.sqrt(np.min(np.prod(config.priors, axis=1))))
    added = None
    h = scenes.shape[1]
    for scale in scales:
        size = round(h * scale)
        enlarged = enlarged_bilinear(scenes, size)
        for (y, *rows), (x, *cols) in itertools.product(pyramid_tiles(size, h), repeat=2):
            tile_found = answer(enlarged[:, y:y + h, x:x + h])
            added = added or [[([], []) for _ in scene] for scene in tile_found]
            for scene, tile_scene in zip(added, tile_found):
                for (all_boxes, all_scores), (boxes, scores) in zip(scene, tile_scene):
                    boxes = boxes + [x, y, x, y]
                    keep = from_tile(boxes, (*cols, *rows), smallest * scale)
                    all_boxes.append(boxes[keep] / scale)
                    all_scores.append(scores[keep])
    return [[(np.concatenate(boxes).reshape(-1, 4), np.concatenate(scores)) for boxes, scores in scene]
            for scene in added]


def median_gain(found, added):
    """A scene's [Q] of (boxes, scores) and the [Q] a pyramid adds (pyramid_boxes) -> how much the
    pyramid raises the best score of the scene's median query (0 where it finds nothing better)."""
    def best(scores):
        return float(np.max(scores)) if len(scores) else 0.0
    return float(np.median([max(0.0, best(a) - best(f)) for (_, f), (_, a) in zip(found, added)]))


def with_pyramid(found, scenes, scales, answer, config, min_gain=None):
    """found, [B][Q] of (boxes, scores) in the (B, H, H, 3) uint8 scenes, with the boxes of a test-time
    scene pyramid added (pyramid_boxes; its answer the same). min_gain: only in scenes where they raise
    the median query's best score by more than that (median_gain: a scene whose objects look smaller
    than any in training, one answer for all its queries; None: in every scene)."""
    added = pyramid_boxes(scenes, scales, answer, config)
    return [[(np.concatenate([b, more_b]), np.concatenate([s, more_s]))
             for (b, s), (more_b, more_s) in zip(scene, more)]
            if min_gain is None or median_gain(scene, more) > min_gain else scene
            for scene, more in zip(found, added)]
