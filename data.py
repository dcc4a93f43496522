"""The on-disk dataset (chunks + manifests) and the episode loader.

Layout of a data dir (made by generate_data.py):
    generation.json                 the options it was generated with
    {train,validation,test,test_shift,validation_shift}/
        manifest.json               counts, shapes, config, seed, versions, a checksum per chunk
        views_NNNN/                 views.npy (M, V, h, w, 4) uint8 RGBA, obj_ids.npy (M,) int16
        scenes_NNNN/                rgb.npy (S, H, W, 3) uint8, obj_ids.npy (S, K) int16,
                                    box_masks.npy / visible_masks.npy (S, K, G, G) uint8 {0,1},
                                    boxes.npy (S, K, I, 4) int16, pixel_counts.npy (S, K, I) int32
A chunk is a directory of plain .npy files, so every array is memory-mapped rather than read,
and it appears by an atomic rename, so a chunk that exists is complete.
"""

import hashlib
import os
import queue
import shutil
import threading

import cv2
import numpy as np
from PIL import Image

from render import padded_box_cells
from util import GREY, DataError, read_json, temp_path

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test", "test_shift", "validation_shift", "test_backlit", "test_relit",
          "test_everyday")  # appended only: a split's index seeds its chunks (generate_data.chunk_rng)
# The robustness splits, each the test objects under one condition outside the training ranges:
# test_shift, scenes photographed from farther, lower and every side (validation_shift: the validation
# objects so, where choices for such cameras are made); test_backlit, references lit from behind as
# the original rendered them; test_relit, scenes under a low, tinted light; test_everyday, pybullet's
# everyday meshes (a held-out object family) among test objects
SAME_OBJECTS_AS = {"test_shift": "test", "validation_shift": "validation", "test_backlit": "test",
                   "test_relit": "test", "test_everyday": "test"}
CHECKSUM_FILE = "checksum.sha256"
MAKE_DATA_HINT = "make it with `sh generate_split_chunk_data.sh` (or `python generate_data.py --out-dir DIR`)"


def parse_id_range(text):
    """'800-899' -> [800, ..., 899], inclusive at both ends as users write it; ranges joined by
    commas ('0-799,10000-19999') are listed one after the other."""
    ids = []
    for part in text.split(","):
        try:
            lo, hi = (int(end) for end in part.split("-"))
        except ValueError:
            raise ValueError(f"object id range {text!r} must look like 800-899 or 0-799,10000-19999") from None
        if hi < lo:
            raise ValueError(f"object id range {part!r} is empty")
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) < len(ids):
        raise ValueError(f"object id ranges {text!r} overlap")
    return ids


def format_id_ranges(ids):
    """[900, 901, 902, 1000] -> '900-902,1000-1000': parse_id_range's text for a list of ids."""
    ranges, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[i - 1] + 1:
            ranges.append(f"{ids[start]}-{ids[i - 1]}")
            start = i
    return ",".join(ranges)


# ---------------------------------------------------------------------------------------------
# chunks


def chunk_checksum(path):
    """sha256 over the chunk's .npy files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(n for n in os.listdir(path) if n.endswith(".npy")):
        digest.update(name.encode())
        with open(os.path.join(path, name), "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def write_chunk(path, arrays):
    """Writes {name: array} as a chunk directory, atomically; returns its checksum."""
    tmp = temp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, array in arrays.items():
        np.save(os.path.join(tmp, f"{name}.npy"), array)
    checksum = chunk_checksum(tmp)
    with open(os.path.join(tmp, CHECKSUM_FILE), "w") as f:
        f.write(checksum + "\n")
    try:
        os.rename(tmp, path)
    except OSError:
        if not chunk_is_valid(path):
            raise
        # another writer finished the same chunk first (a worker orphaned by a killed run, say):
        # its bytes are these, as every chunk is a function of its seed alone
        shutil.rmtree(tmp)
    return checksum


def stored_checksum(path):
    """The checksum a chunk was written with, or None if the chunk is absent."""
    try:
        with open(os.path.join(path, CHECKSUM_FILE)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def chunk_is_valid(path):
    checksum = stored_checksum(path)
    return checksum is not None and checksum == chunk_checksum(path)


def open_chunk(path, expected_checksum, verify):
    if not os.path.isdir(path):
        raise DataError(f"chunk {path} is missing: rerun generate_split_chunk_data.sh with the same "
                        "settings to render it")
    if verify and chunk_checksum(path) != expected_checksum:
        raise DataError(f"chunk {path} does not match its checksum in the manifest (corrupted or "
                        "changed after generation): delete that directory and rerun "
                        "generate_split_chunk_data.sh with the same settings to render it again")
    return {name[:-4]: np.load(os.path.join(path, name), mmap_mode="r")
            for name in sorted(os.listdir(path)) if name.endswith(".npy")}


# ---------------------------------------------------------------------------------------------
# splits


def read_manifest(data_dir, split):
    if not os.path.isdir(data_dir):
        raise DataError(f"data dir {data_dir} does not exist: {MAKE_DATA_HINT}")
    path = os.path.join(data_dir, split, "manifest.json")
    if not os.path.exists(path):
        raise DataError(f"{path} is missing (generation of the {split} split did not finish, or it "
                        f"was not asked for): {MAKE_DATA_HINT}; a rerun carries on where it stopped")
    manifest = read_json(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} has data format version {manifest.get('format_version')}, this code "
                        f"reads version {FORMAT_VERSION}: regenerate the data into a new directory")
    return manifest


def check_disjoint(manifests):
    """Fails if any object id is in two splits (the shift splits share their splits' objects): the
    test must be on objects never trained on."""
    owner = {}
    for manifest in manifests:
        split = SAME_OBJECTS_AS.get(manifest["split"], manifest["split"])
        for obj_id in parse_id_range(manifest["object_ids"]):
            if owner.setdefault(obj_id, split) != split:
                raise DataError(f"object {obj_id} is in both the {owner[obj_id]} and {manifest['split']} "
                                "splits: regenerate with disjoint --*-ids ranges")


class Split:
    """One split's reference views and scenes, memory-mapped from its chunks."""

    def __init__(self, data_dir, split, verify=True):
        self.name = split
        self.data_dir = data_dir
        self.manifest = read_manifest(data_dir, split)
        others = [read_manifest(data_dir, s) for s in SPLITS
                  if s != split and os.path.exists(os.path.join(data_dir, s, "manifest.json"))]
        check_disjoint([self.manifest, *others])
        self.object_ids = np.asarray(parse_id_range(self.manifest["object_ids"]))
        view_chunks, scene_chunks = [], []
        for chunk in self.manifest["chunks"]:
            arrays = open_chunk(os.path.join(data_dir, split, chunk["name"]), chunk["checksum"], verify)
            (view_chunks if chunk["kind"] == "views" else scene_chunks).append(arrays)
        # obj id -> (chunk, row) of its views
        self._view_home = {int(obj_id): (c, row) for c, arrays in enumerate(view_chunks)
                           for row, obj_id in enumerate(arrays["obj_ids"])}
        self._view_chunks = view_chunks
        self._scene_home = [(c, row) for c, arrays in enumerate(scene_chunks)
                            for row in range(len(arrays["rgb"]))]
        self._scene_chunks = scene_chunks
        self.views_per_object = self.manifest["views_per_object"]
        self.objects_per_scene = self.manifest["objects_per_scene"]

    @property
    def num_scenes(self):
        return len(self._scene_home)

    def views(self, obj_id):
        """(V, h, w, 4) uint8 RGBA reference views of one object (memory-mapped)."""
        c, row = self._view_home[int(obj_id)]
        return self._view_chunks[c]["views"][row]

    def scene(self, index):
        """{rgb, obj_ids, box_masks, visible_masks, boxes, pixel_counts} of one scene."""
        c, row = self._scene_home[index]
        return {name: array[row] for name, array in self._scene_chunks[c].items()}


# ---------------------------------------------------------------------------------------------
# episodes


class SceneCrops:
    """Reference views cut out of a split's scenes, as a user would crop them from photos: a square
    around an instance's box with `margin` (a share of its longer side) on each side, the real
    table and neighbours around the object, resized to the views' size, alpha 255 throughout.

    For a query in scene s, the N crops are the object's N most visible instances (by pixel count)
    in scenes other than s, so a reference never shows the scene searched; where the object has
    fewer, the crops repeat. An object with no instance elsewhere falls back on its rendered views
    and is counted in `fallbacks`.
    """

    def __init__(self, split, margin=0.25):
        self.split = split
        self.margin = margin
        self.size = split.manifest["arrays"]["views"]["shape"][1]
        self.fallbacks = set()
        self.instances = {}  # obj id -> [(pixel count, scene index, (x0, y0, x1, y1))], most visible first
        for index in range(split.num_scenes):
            scene = split.scene(index)
            for obj_id, boxes, counts in zip(scene["obj_ids"], scene["boxes"], scene["pixel_counts"]):
                for box, count in zip(boxes, counts):
                    if box[0] >= 0:
                        self.instances.setdefault(int(obj_id), []).append((int(count), index, tuple(map(int, box))))
        for found in self.instances.values():
            found.sort(key=lambda item: (-item[0], item[1]))

    def crop(self, rgb, box):
        """(H, W, 3) uint8 scene, pixel box -> (size, size, 4) uint8 RGBA crop, grey past the edges."""
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * self.margin)
        left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
        square = Image.new("RGB", (max(round(side), 1),) * 2, (GREY,) * 3)
        square.paste(Image.fromarray(rgb), (-left, -top))  # the scene, shifted; grey where it does not reach
        resized = np.asarray(square.resize((self.size, self.size), Image.BILINEAR))
        return np.concatenate([resized, np.full((self.size, self.size, 1), 255, np.uint8)], axis=-1)

    def views(self, obj_id, count, scene_index, rng=None):
        """(count, size, size, 4) uint8 RGBA crops of obj_id from scenes other than scene_index: the
        most visible instances, or with `rng` (training) a random draw from the more visible half."""
        found = [(s, box) for _, s, box in self.instances.get(int(obj_id), []) if s != scene_index]
        if not found:
            self.fallbacks.add(int(obj_id))
            return self.split.views(obj_id)[:count]
        if rng is not None:
            pool = max(count, (len(found) + 1) // 2)
            found = [found[j] for j in rng.choice(min(pool, len(found)), size=count, replace=len(found) < count)]
        return np.stack([self.crop(self.split.scene(s)["rgb"], box)
                         for s, box in (found[i % len(found)] for i in range(count))])


def zoom_scene(rgb, boxes, visible_masks, z, offset):
    """A scene as a camera zoomed by z would see it: z < 1 farther (the scene shrunk onto its own
    border colour), z > 1 nearer (a window of it enlarged), the zoomed image's top-left corner at
    pixel `offset` (x, y). rgb (H, H, 3) uint8, boxes (K, I, 4) int16 (-1: not visible),
    visible_masks (K, G, G) uint8 -> (rgb, boxes, box_masks, visible_masks) of the new view:
    boxes clipped to the frame, -1 where nothing is left; the box masks rebuilt from them as
    render.scene_labels builds them; the visible masks moved cell by cell with the scene."""
    size, grid = rgb.shape[0], visible_masks.shape[-1]
    ox, oy = offset
    inverse = (1 / z, 0, -ox / z, 0, 1 / z, -oy / z)  # output pixel -> input pixel, as PIL wants
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    image = np.asarray(Image.fromarray(rgb).transform((size, size), Image.AFFINE, inverse, Image.BILINEAR,
                                                      fillcolor=fill))
    moved = np.full(boxes.shape, -1, np.int16)
    box_masks = np.zeros(visible_masks.shape, np.uint8)
    for k, i in zip(*np.nonzero(boxes[..., 0] >= 0)):
        x0, y0, x1, y1 = boxes[k, i].astype(float) * z + (ox, oy, ox, oy)
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        x1, y1 = min(int(np.ceil(x1)), size), min(int(np.ceil(y1)), size)
        if x1 > x0 and y1 > y0:
            moved[k, i] = (x0, y0, x1, y1)
            cx0, cy0, cx1, cy1 = padded_box_cells((x0, y0, x1, y1), size, grid)
            box_masks[k, cy0:cy1 + 1, cx0:cx1 + 1] = 1
    cell = size // grid  # the visible masks at pixel level, moved like the scene, any-pooled back
    pixels = np.repeat(np.repeat(visible_masks, cell, axis=1), cell, axis=2)
    visible = np.stack([np.asarray(Image.fromarray(m).transform((size, size), Image.AFFINE, inverse, Image.NEAREST))
                        for m in pixels]).reshape(len(pixels), grid, cell, grid, cell).max(axis=(2, 4))
    return image, moved, box_masks, visible


# Photometric augmentation's ranges, drawn per image: a camera's exposure, contrast, response and white
# balance, its optics and sensor, and a compressed photo's blocks
PHOTOMETRIC = dict(brightness=(0.6, 1.4), contrast=(0.6, 1.4), gamma=(0.7, 1.4), saturation=(0.4, 1.6),
                   hue_degrees=(-20.0, 20.0), blur_share=0.25, blur_sigma=(0.4, 1.2), noise_share=0.3,
                   noise_std=(2.0, 10.0), jpeg_share=0.3, jpeg_quality=(30, 90))
# RGB <-> YIQ: hue turns I and Q about Y, saturation scales them
TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
FROM_YIQ = np.linalg.inv(TO_YIQ).astype(np.float32)


def photometric_augmentation(images, rng):
    """Each image as another camera and light might have taken it: gamma, hue, saturation,
    brightness and contrast, then for a share of them blur, sensor noise and JPEG artefacts, each
    drawn from PHOTOMETRIC. images (n, H, W, 3) uint8 -> (n, H, W, 3) uint8, a new array.

    OpenCV's lookup tables and colour matrix one image at a time: on 64x64 views several times
    faster than the same maths as numpy arrays over the whole batch."""
    p, n = PHOTOMETRIC, len(images)
    gamma, saturation, brightness, contrast = (rng.uniform(*p[k], size=(n, 1))
                                               for k in ("gamma", "saturation", "brightness", "contrast"))
    angle = np.radians(rng.uniform(*p["hue_degrees"], size=n))
    blur, noise, jpeg = (rng.uniform(size=n) < p[k] for k in ("blur_share", "noise_share", "jpeg_share"))
    sigma, std = rng.uniform(*p["blur_sigma"], size=n), rng.uniform(*p["noise_std"], size=n)
    quality = rng.integers(*p["jpeg_quality"], size=n, endpoint=True)
    levels = np.arange(256)
    gamma_tables = np.rint((levels / 255) ** gamma * 255).astype(np.uint8)  # (n, 256)
    turn = np.zeros((n, 3, 3))
    turn[:, 0, 0] = 1
    turn[:, 1, 1] = turn[:, 2, 2] = saturation[:, 0] * np.cos(angle)
    turn[:, 2, 1] = saturation[:, 0] * np.sin(angle)
    turn[:, 1, 2] = -turn[:, 2, 1]
    colours = FROM_YIQ @ turn @ TO_YIQ * brightness[:, :, None]  # (n, 3, 3)
    out = np.empty_like(images)
    for i in range(n):
        image = cv2.transform(cv2.LUT(images[i], gamma_tables[i]), colours[i])  # (H, W, 3) uint8, saturated
        mean = sum(cv2.mean(image)[:3]) / 3
        out[i] = cv2.LUT(image, np.clip(np.rint((levels - mean) * contrast[i] + mean), 0, 255).astype(np.uint8))
    for i in np.flatnonzero(blur):
        out[i] = cv2.GaussianBlur(out[i], (0, 0), sigma[i])
    if noise.any():
        grain = rng.normal(0, 1, size=(noise.sum(), *images.shape[1:])) * std[noise, None, None, None]
        out[noise] = np.clip(out[noise] + grain, 0, 255).astype(np.uint8)
    for i in np.flatnonzero(jpeg):
        out[i] = cv2.imdecode(cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])[1],
                              cv2.IMREAD_UNCHANGED)
    return out


class EpisodeLoader:
    """Training episodes as in the original: one scene, C of its objects, N anchor and N positive
    views of each (all 2N distinct), the C target masks; uint8 throughout. With num_absent = K,
    K more objects of the split that are NOT in the scene follow the C, with empty targets, so a
    model learns to answer "not here".

    Episode i is a pure function of (seed, i): scenes are visited in a fresh permutation per
    epoch and the rest is drawn from a Generator seeded with (seed, i). So the loader's whole
    state is `position`, the index of the next episode, which is saved and restored to resume.
    Views sit on random background colours in training and on grey otherwise, unless
    `background` ("random" or "grey") says. With `crops` (a SceneCrops of the split), the anchor
    views are cut out of other scenes instead of rendered: every object's in evaluation, a random
    `crop_share` of the objects' in training (their positives stay rendered, so the contrastive
    loss ties crops to renders). With zoom Z > 1, each scene is seen zoomed by a factor drawn
    log-uniformly from [1/Z, Z] (zoom_in False: [1/Z, 1], never nearer) at a random place
    (zoom_scene), targets moved with it; with zoom_share < 1, only that share of the scenes. With
    `photometric`, the scene and every view are recoloured, blurred, noised and compressed apart
    (photometric_augmentation).
    """

    def __init__(self, split, num_objects, num_views, seed, training, position=0, num_absent=0, positives=True,
                 background=None, crops=None, crop_share=1.0, zoom=1.0, zoom_in=True,
                 zoom_share=1.0, photometric=False):
        if num_objects > split.objects_per_scene:
            raise DataError(f"{split.name} scenes hold {split.objects_per_scene} objects each, fewer than "
                            f"the {num_objects} objects per episode asked for: lower C (--num-objects)")
        if (2 if positives else 1) * num_views > split.views_per_object:
            raise DataError(f"{split.name} has {split.views_per_object} views per object, fewer than the "
                            f"{(2 if positives else 1) * num_views} distinct views asked for: lower N "
                            "(--num-views) or generate more --views-per-object")
        if num_absent > len(split.object_ids) - split.objects_per_scene:
            raise DataError(f"{split.name} has {len(split.object_ids)} objects, too few for {num_absent} absent "
                            f"queries besides a scene's {split.objects_per_scene}: ask for fewer (train.py "
                            "--absent-queries-per-scene and --absent-candidates, test.py --absent-queries)")
        self.split = split
        self.num_objects = num_objects
        self.num_absent = num_absent
        self.num_views = num_views
        self.seed = seed
        self.position = position
        self.positives = positives  # False: anchors only (inference needs no positives), so N <= V
        self.background = background or ("random" if training else "grey")
        self.crops = crops
        self.crop_share = crop_share
        self.zoom = zoom
        self.zoom_in = zoom_in
        self.zoom_share = zoom_share
        self.photometric = photometric
        self.training = training
        self._epoch_order = (None, None)

    def scene_index(self, i):
        """The scene (index into the split) that episode i shows."""
        epoch, offset = divmod(i, self.split.num_scenes)
        if self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.split.num_scenes)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1][offset]

    def episode(self, i):
        rng = np.random.default_rng([self.seed, i, 1])
        scene = self.split.scene(self.scene_index(i))
        c, n = self.num_objects, self.num_views
        slots = np.sort(rng.choice(self.split.objects_per_scene, size=c, replace=False))
        obj_ids = scene["obj_ids"][slots]  # (C,)
        k = self.num_absent
        if k:
            absent = rng.choice(np.setdiff1d(self.split.object_ids, scene["obj_ids"]), size=k, replace=False)
            obj_ids = np.concatenate([obj_ids, absent.astype(obj_ids.dtype)])  # (C + K,)
        # without positives, the anchors are the first N of the same draw (up to all V views), so
        # that they are those a loader with positives shows
        v = 2 * n if self.positives else n
        drawn = min(2 * n, self.split.views_per_object)
        views = np.stack([self.split.views(obj_id)[rng.choice(self.split.views_per_object, drawn, replace=False)[:v]]
                          for obj_id in obj_ids])  # (C + K, 2N or N, h, w, 4) uint8
        if self.crops is not None:  # after the draw above, so that the episode is otherwise the same
            cropped = rng.random(c + k) < self.crop_share if self.crop_share < 1 else np.ones(c + k, bool)
            for j in np.flatnonzero(cropped):
                views[j, :n] = self.crops.views(obj_ids[j], n, self.scene_index(i), rng if self.training else None)
        if self.background == "random":
            backgrounds = rng.integers(0, 256, size=(c + k, v, 3), dtype=np.uint8)
        else:
            backgrounds = np.full((c + k, v, 3), GREY, dtype=np.uint8)

        rgb, boxes, box_masks, visible_masks = (np.asarray(scene["rgb"]), scene["boxes"], scene["box_masks"],
                                                scene["visible_masks"])
        if self.zoom > 1:  # drawn last, so that the rest of the episode is that of a loader without zoom
            z = float(np.exp(rng.uniform(-np.log(self.zoom), np.log(self.zoom) if self.zoom_in else 0.0)))
            offset = rng.uniform(*sorted((0.0, rgb.shape[0] * (1 - z))), size=2)
            if self.zoom_share >= 1 or rng.uniform() < self.zoom_share:  # share 1 draws as it did before shares
                rgb, boxes, box_masks, visible_masks = zoom_scene(rgb, boxes, visible_masks, z, offset)
        if self.photometric:  # drawn after the zoom, for the same reason
            rgb = photometric_augmentation(rgb[None], rng)[0]
            views = views.copy()
            views[..., :3] = photometric_augmentation(views[..., :3].reshape(-1, *views.shape[-3:-1], 3),
                                                      rng).reshape(*views.shape[:-1], 3)

        def absent_too(array, fill):  # (C, ...) -> (C + K, ...), the absent objects' rows filled
            return np.concatenate([array, np.full((k, *array.shape[1:]), fill, dtype=array.dtype)])

        episode = {
            "scene": rgb,  # (H, W, 3) uint8
            "anchors": views[:, :n],  # (C + K, N, h, w, 4) uint8
            "anchor_backgrounds": backgrounds[:, :n],  # (C + K, N, 3) uint8
            "masks": absent_too(box_masks[slots], 0),  # (C + K, G, G) uint8 {0,1}
            "visible_masks": absent_too(visible_masks[slots], 0),  # (C + K, G, G) uint8 {0,1}
            "boxes": absent_too(boxes[slots], -1),  # (C + K, I, 4) int16, -1 where not visible
            "obj_ids": obj_ids,  # (C + K,) int16
        }
        if self.positives:
            episode.update(positives=views[:, n:], positive_backgrounds=backgrounds[:, n:])  # as the anchors
        return episode

    def batches(self, batch_size, share=None):
        """Endless stacked batches of B consecutive episodes; advances `position` by B a batch.
        share=(first, count): only episodes first..first+count-1 of each batch (one host's part of
        a batch spread over several)."""
        first, count = share or (0, batch_size)
        while True:
            episodes = [self.episode(self.position + first + b) for b in range(count)]
            self.position += batch_size
            yield {key: np.stack([e[key] for e in episodes]) for key in episodes[0]}  # (B, ...)


def prefetch(iterator, depth=4):
    """Runs `iterator` in a background thread, `depth` items ahead of the consumer.

    numpy's copies release the GIL, so gathering the next batch overlaps the train step.
    """
    items = queue.Queue(maxsize=depth)
    done = object()

    def fill():
        try:
            for item in iterator:
                items.put(item)
        except BaseException as error:  # handed to the consumer, which re-raises it
            items.put(error)
        items.put(done)

    threading.Thread(target=fill, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
