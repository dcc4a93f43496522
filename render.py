"""Renders reference views and table-top scenes with pybullet's CPU renderer.

The 1000 procedurally generated objects (random_urdfs/NNN/NNN.urdf) and the table ship inside
the pybullet pip package, so nothing is downloaded. Every random choice comes from the numpy
Generator passed in, and each render starts from a reset world, so the same Generator state
gives the same bytes whatever was rendered before in this process.
"""

import os
from dataclasses import dataclass

import numpy as np


def _import_pybullet():
    """pybullet prints its build time on stderr when imported, once per worker process, into
    the middle of the progress bar; stderr is pointed at /dev/null for the import alone."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            import pybullet
            import pybullet_data
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return pybullet, pybullet_data


pb, pybullet_data = _import_pybullet()

NUM_OBJECTS = 1000  # objects in pybullet_data/random_urdfs
LIGHT_DIRECTION = (0, 1, 1)
LIGHT_COLOUR = (1, 1, 1)
TABLE_POSITION = (0.5, 0, -0.82)
DROP_HEIGHT = 0.5
STEPS_PER_DROP = 10
STEPS_TO_SETTLE = 100
BOX_PAD_PX_AT_640 = 3  # box-mask padding, in pixels of a 640x640 scene


def object_urdf(obj_id):
    if not 0 <= obj_id < NUM_OBJECTS:
        raise ValueError(f"object id {obj_id} is outside random_urdfs' range 0-{NUM_OBJECTS - 1}")
    return os.path.join(pybullet_data.getDataPath(), "random_urdfs", f"{obj_id:03d}", f"{obj_id:03d}.urdf")


def random_orientation(rng):
    return pb.getQuaternionFromEuler(rng.uniform(0, np.pi, size=3))


@dataclass(frozen=True)
class CameraRanges:
    """Uniform ranges the scene camera is drawn from; the defaults are the original's."""

    distance: tuple = (1.0, 2.0)  # metres from a point near the table's centre
    pitch: tuple = (-89.0, -60.0)  # degrees; -90 looks straight down
    yaw: tuple = (0.0, 180.0)  # degrees around the table


@dataclass
class SceneLabels:
    """Labels for the K distinct objects of one scene (K=16 in the original), I instances each."""

    obj_ids: np.ndarray  # (K,) int16
    box_masks: np.ndarray  # (K, G, G) uint8 {0,1}: union of the padded instance boxes (training target)
    visible_masks: np.ndarray  # (K, G, G) uint8 {0,1}: cells holding any visible pixel of the object
    boxes: np.ndarray  # (K, I, 4) int16 pixel (x0, y0, x1, y1), x1/y1 exclusive; -1 where not visible
    pixel_counts: np.ndarray  # (K, I) int32 visible pixels per instance


class Renderer:
    """One pybullet DIRECT client; cheap to keep per worker process, not thread-safe."""

    def __init__(self):
        self.client = pb.connect(pb.DIRECT)

    def close(self):
        pb.disconnect(physicsClientId=self.client)

    def _reset_world(self):
        pb.resetSimulation(physicsClientId=self.client)

    def _load(self, urdf, position, orientation=(0, 0, 0, 1)):
        return pb.loadURDF(urdf, position, orientation, physicsClientId=self.client)

    def _camera_image(self, size, view, projection):
        _, _, rgba, _, seg = pb.getCameraImage(
            size, size, view, projection, lightDirection=LIGHT_DIRECTION, lightColor=LIGHT_COLOUR,
            shadow=1, renderer=pb.ER_TINY_RENDERER, physicsClientId=self.client)
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)  # (H, W, 4) uint8
        seg = np.asarray(seg, dtype=np.int32).reshape(size, size)  # (H, W) body id, -1 for sky
        return rgba, seg

    def reference_view(self, obj_id, rng, size=64):
        """One object at the origin in a random orientation: (size, size, 4) uint8 RGBA.

        Alpha is 255 on the object's pixels (from the segmentation) and 0 elsewhere, so any
        background colour can be composited later.
        """
        self._reset_world()
        body = self._load(object_urdf(obj_id), (0, 0, 0), random_orientation(rng))
        view = pb.computeViewMatrix(cameraEyePosition=(0, 0.2, 1e-4), cameraTargetPosition=(0, 0, 0),
                                    cameraUpVector=(0, 0, 1))
        projection = pb.computeProjectionMatrixFOV(fov=50, aspect=1, nearVal=0.1, farVal=100)
        rgba, seg = self._camera_image(size, view, projection)
        rgba = rgba.copy()
        rgba[..., 3] = np.where(seg == body, 255, 0)
        return rgba

    def scene(self, obj_ids, rng, size=640, grid=80, instances=4, camera=CameraRanges()):
        """Drops `instances` copies of each object on the table and photographs it from a camera
        drawn from `camera`'s ranges.

        Returns ((size, size, 3) uint8 RGB, SceneLabels) with labels on a (grid, grid) grid.
        """
        if size % grid:
            raise ValueError(f"scene size {size} must be a multiple of the grid size {grid}")
        obj_ids = np.asarray(obj_ids, dtype=np.int16)
        self._reset_world()
        pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
        self._load(os.path.join(pybullet_data.getDataPath(), "table", "table.urdf"), TABLE_POSITION)

        drops = np.repeat(np.arange(len(obj_ids)), instances)  # object slot of each drop
        rng.shuffle(drops)
        bodies = {}  # pybullet body id -> (object slot, instance index)
        seen = np.zeros(len(obj_ids), dtype=int)
        for slot in drops:
            position = (rng.uniform(0, 1), rng.uniform(-0.25, 0.25), DROP_HEIGHT)
            body = self._load(object_urdf(int(obj_ids[slot])), position, random_orientation(rng))
            bodies[body] = (slot, seen[slot])
            seen[slot] += 1
            for _ in range(STEPS_PER_DROP):
                pb.stepSimulation(physicsClientId=self.client)
        for _ in range(STEPS_TO_SETTLE):
            pb.stepSimulation(physicsClientId=self.client)

        view = pb.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=(rng.uniform(0.4, 0.6), rng.uniform(-0.1, 0.1), 0),
            distance=rng.uniform(*camera.distance), yaw=rng.uniform(*camera.yaw), pitch=rng.uniform(*camera.pitch),
            roll=rng.uniform(-10, 10), upAxisIndex=2)
        projection = pb.computeProjectionMatrixFOV(fov=rng.uniform(40, 50), aspect=1, nearVal=0.1, farVal=100)
        rgba, seg = self._camera_image(size, view, projection)
        return np.ascontiguousarray(rgba[..., :3]), scene_labels(seg, bodies, obj_ids, grid, instances)


def padded_box_cells(box, size, grid):
    """A pixel box (x0, y0, x1, y1) of a size x size scene -> the grid cells (cx0, cy0, cx1, cy1),
    inclusive, that its padded box touches: the box mask's any-pooling, on cell indices directly."""
    x0, y0, x1, y1 = box
    cell, pad = size // grid, round(BOX_PAD_PX_AT_640 * size / 640)
    return (max(x0 - pad, 0) // cell, max(y0 - pad, 0) // cell,
            (min(x1 + pad, size) - 1) // cell, (min(y1 + pad, size) - 1) // cell)


def scene_labels(seg, bodies, obj_ids, grid, instances):
    """Builds SceneLabels from a (H, W) segmentation of body ids; bodies maps id -> (slot, instance)."""
    size = seg.shape[0]
    cell = size // grid
    k = len(obj_ids)
    boxes = np.full((k, instances, 4), -1, dtype=np.int16)
    pixel_counts = np.zeros((k, instances), dtype=np.int32)
    box_masks = np.zeros((k, grid, grid), dtype=np.uint8)
    # (G, G, cell*cell) body ids per cell, to find which bodies touch which cells
    cells = seg.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, cell * cell)
    visible_masks = np.zeros((k, grid, grid), dtype=np.uint8)
    for body, (slot, instance) in bodies.items():
        ys, xs = np.nonzero(seg == body)
        if len(xs) == 0:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        boxes[slot, instance] = (x0, y0, x1, y1)
        pixel_counts[slot, instance] = len(xs)
        cx0, cy0, cx1, cy1 = padded_box_cells((x0, y0, x1, y1), size, grid)
        box_masks[slot, cy0:cy1 + 1, cx0:cx1 + 1] = 1
        visible_masks[slot] |= (cells == body).any(axis=-1).astype(np.uint8)
    return SceneLabels(obj_ids, box_masks, visible_masks, boxes, pixel_counts)
