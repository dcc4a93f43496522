"""Renders reference views and table-top scenes with pybullet's CPU renderer.

Objects are named by id, and every one of them ships inside the pybullet pip package or is built
from its id, so nothing is downloaded:
    0-999         pybullet's procedurally generated blocks (random_urdfs/NNN/NNN.urdf)
    1000-1008     everyday meshes (EVERYDAY: duck, teddy, mug, ...), scaled to the blocks' size: a
                  held-out object family, to evaluate on and never to train on
    10000-32767   yolz's procedural objects: 1-4 boxes, cylinders, spheres and capsules in one or
                  more colours, each a pure function of its id (procedural_parts)
How a render is lit, where the reference camera stands and the table's colour come from an
Appearance (APPEARANCES). Every random choice comes from the numpy Generator passed in, and each
render starts from a reset world, so the same Generator state gives the same bytes whatever was
rendered before in this process.
"""

import colorsys
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
# pybullet_data's everyday meshes from id 1000, each with the scale that brings its longest side
# to about 0.1 m, the blocks' size (measured with pb.getAABB)
EVERYDAY = (("duck_vhacd.urdf", 1.1), ("teddy_vhacd.urdf", 1.0), ("objects/mug.urdf", 0.8), ("soccerball.urdf", 0.1),
            ("lego/lego.urdf", 3.0), ("jenga/jenga.urdf", 0.7), ("domino/domino.urdf", 2.0),
            ("cube_small.urdf", 2.0), ("sphere2red.urdf", 0.1))
FIRST_EVERYDAY = 1000
FIRST_PROCEDURAL = 10000
LAST_ID = 32767  # ids are stored as int16
OBJECT_FAMILIES = ("0-999: pybullet's blocks, 1000-1008: everyday meshes (held out: never train on them), "
                   f"{FIRST_PROCEDURAL}-{LAST_ID}: procedural objects")
LIGHT_DIRECTION = (0, 1, 1)
LIGHT_COLOUR = (1, 1, 1)
REFERENCE_EYE = (0, 0.2, 1e-4)  # the reference camera: in front of the object, the light behind it
BACKLIT_EYE = (0, -0.2, 1e-4)  # the original's side: the light in front, the object lit from behind
TABLE_POSITION = (0.5, 0, -0.82)
DROP_HEIGHT = 0.5
STEPS_PER_DROP = 10
STEPS_TO_SETTLE = 100
BOX_PAD_PX_AT_640 = 3  # box-mask padding, in pixels of a 640x640 scene


def object_family(obj_id):
    """"blocks", "everyday" or "procedural"; a ValueError for an id outside them."""
    if 0 <= obj_id < NUM_OBJECTS:
        return "blocks"
    if FIRST_EVERYDAY <= obj_id < FIRST_EVERYDAY + len(EVERYDAY):
        return "everyday"
    if FIRST_PROCEDURAL <= obj_id <= LAST_ID:
        return "procedural"
    raise ValueError(f"object id {obj_id} names no object ({OBJECT_FAMILIES})")


def object_urdf(obj_id):
    """(urdf path, scale) of a block or an everyday mesh."""
    if object_family(obj_id) == "blocks":
        return os.path.join(pybullet_data.getDataPath(), "random_urdfs", f"{obj_id:03d}", f"{obj_id:03d}.urdf"), 1.0
    if object_family(obj_id) == "everyday":
        name, scale = EVERYDAY[obj_id - FIRST_EVERYDAY]
        return os.path.join(pybullet_data.getDataPath(), name), scale
    raise ValueError(f"object {obj_id} is procedural: it has no urdf")


PART_KINDS = ("box", "cylinder", "sphere", "capsule")


def procedural_parts(obj_id):
    """A procedural object's parts, drawn from its id alone: [(kind, half sizes (3,) m, offset (3,) m,
    orientation quaternion, rgba)], the first part at the origin. Like pybullet's blocks, about 0.1 m
    across; a third of them in more than one colour."""
    rng = np.random.default_rng([FIRST_PROCEDURAL, obj_id])
    colour = rng.uniform(0, 1, size=3)
    many_colours = rng.uniform() < 1 / 3
    parts = []
    for index in range(rng.integers(1, 5)):
        kind = PART_KINDS[rng.integers(len(PART_KINDS))]
        half = rng.uniform(0.012, 0.045, size=3)
        offset = np.zeros(3) if index == 0 else rng.uniform(-0.035, 0.035, size=3)
        orientation = pb.getQuaternionFromEuler(rng.uniform(0, np.pi, size=3))
        rgba = (*(rng.uniform(0, 1, size=3) if many_colours and index else colour), 1.0)
        parts.append((kind, half, offset, orientation, rgba))
    return parts


def random_orientation(rng):
    return pb.getQuaternionFromEuler(rng.uniform(0, np.pi, size=3))


@dataclass(frozen=True)
class Lighting:
    """One render's light: getCameraImage's arguments. The defaults are the fixed light every
    render had before appearances were drawn (pybullet's own coefficients)."""

    direction: tuple = LIGHT_DIRECTION
    colour: tuple = LIGHT_COLOUR
    coefficients: tuple = None  # (ambient, diffuse, specular); None: pybullet's defaults
    shadow: int = 1

    def camera_arguments(self):
        arguments = dict(lightDirection=self.direction, lightColor=self.colour, shadow=self.shadow)
        if self.coefficients is not None:
            arguments.update(zip(("lightAmbientCoeff", "lightDiffuseCoeff", "lightSpecularCoeff"), self.coefficients))
        return arguments


@dataclass(frozen=True)
class Appearance:
    """Uniform ranges a render's light, the reference camera and the table colour are drawn from,
    per scene and independently per reference view. A range left None is not drawn: the fixed
    value every render had before (so APPEARANCES["fixed"] renders today's data byte for byte).

    The light comes from an azimuth in [0, 360) at `light_elevation` degrees above the table, its
    colour a hue at random with `light_saturation` (0: white); `reference_side` "front" and "back"
    put the reference camera at REFERENCE_EYE or BACKLIT_EYE, "any" on a random direction at
    `reference_distance` metres.
    """

    light_elevation: tuple = None
    light_saturation: tuple = None
    ambient: tuple = None
    diffuse: tuple = None
    specular: tuple = None
    shadow_share: float = None  # share of renders with shadows
    reference_side: str = "front"
    reference_distance: tuple = (0.2, 0.2)
    table_brightness: tuple = None  # each channel of the table's colour

    def lighting(self, rng):
        if self.light_elevation is None:
            return Lighting()
        azimuth, elevation = np.radians(rng.uniform(0, 360)), np.radians(rng.uniform(*self.light_elevation))
        direction = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation))
        colour = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*self.light_saturation), 1.0)
        coefficients = tuple(rng.uniform(*r) for r in (self.ambient, self.diffuse, self.specular))
        return Lighting(tuple(direction), tuple(colour), coefficients, int(rng.uniform() < self.shadow_share))

    def reference_eye(self, rng):
        if self.reference_side != "any":
            return {"front": REFERENCE_EYE, "back": BACKLIT_EYE}[self.reference_side]
        direction = rng.normal(size=3)
        eye = direction / np.linalg.norm(direction) * rng.uniform(*self.reference_distance)
        return tuple(eye) if abs(eye[2]) < 0.99 * np.linalg.norm(eye) else (1e-4, eye[1], eye[2])  # not along up

    def table_colour(self, rng):
        return None if self.table_brightness is None else (*rng.uniform(*self.table_brightness, size=3), 1.0)


APPEARANCES = {
    # today's renders: one white light from (0, 1, 1), references from the front, a white table
    "fixed": Appearance(),
    # domain randomisation for training: light from anywhere above at least 20 degrees, faintly
    # tinted, shading and shadows varied, references from every side, the table any grey to colour
    "random": Appearance(light_elevation=(20.0, 90.0), light_saturation=(0.0, 0.35), ambient=(0.3, 0.8),
                         diffuse=(0.2, 0.7), specular=(0.0, 0.4), shadow_share=0.8, reference_side="any",
                         reference_distance=(0.2, 0.32), table_brightness=(0.4, 1.0)),
    # outside those ranges, for the robustness splits: a low, strongly tinted light on the scene...
    "relit": Appearance(light_elevation=(5.0, 20.0), light_saturation=(0.4, 0.7), ambient=(0.3, 0.8),
                        diffuse=(0.2, 0.7), specular=(0.0, 0.4), shadow_share=1.0),
    # ... and references photographed as the original did, the light behind the object
    "backlit": Appearance(reference_side="back"),
}


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

    def _load(self, obj_id, position, orientation=(0, 0, 0, 1)):
        """Places object obj_id; returns its body id (a procedural object is one body of fixed links)."""
        if object_family(obj_id) != "procedural":
            urdf, scale = object_urdf(obj_id)
            return pb.loadURDF(urdf, position, orientation, globalScaling=scale, physicsClientId=self.client)
        shapes = []
        for kind, half, offset, part_orientation, rgba in procedural_parts(obj_id):
            geometry = getattr(pb, f"GEOM_{kind.upper()}")
            if kind == "box":
                collision_size = visual_size = dict(halfExtents=half)
            elif kind == "sphere":
                collision_size = visual_size = dict(radius=half[0])
            else:  # a cylinder or capsule: its length is "height" to a collision shape, "length" to a visual one
                collision_size, visual_size = dict(radius=half[0], height=2 * half[2]), dict(radius=half[0],
                                                                                           length=2 * half[2])
            shapes.append((pb.createCollisionShape(geometry, physicsClientId=self.client, **collision_size),
                           pb.createVisualShape(geometry, rgbaColor=rgba, physicsClientId=self.client, **visual_size),
                           offset, part_orientation))
        (collision, visual, _, base_orientation), links = shapes[0], shapes[1:]
        return pb.createMultiBody(
            0.1, collision, visual, position, pb.multiplyTransforms((0, 0, 0), orientation, (0, 0, 0),
                                                                    base_orientation)[1],
            linkMasses=[0.02] * len(links), linkCollisionShapeIndices=[s[0] for s in links],
            linkVisualShapeIndices=[s[1] for s in links], linkPositions=[s[2] for s in links],
            linkOrientations=[s[3] for s in links], linkInertialFramePositions=[(0, 0, 0)] * len(links),
            linkInertialFrameOrientations=[(0, 0, 0, 1)] * len(links), linkParentIndices=[0] * len(links),
            linkJointTypes=[pb.JOINT_FIXED] * len(links), linkJointAxis=[(0, 0, 1)] * len(links),
            physicsClientId=self.client)

    def _camera_image(self, size, view, projection, lighting):
        _, _, rgba, _, seg = pb.getCameraImage(size, size, view, projection, renderer=pb.ER_TINY_RENDERER,
                                               physicsClientId=self.client, **lighting.camera_arguments())
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)  # (H, W, 4) uint8
        seg = np.asarray(seg, dtype=np.int32).reshape(size, size)  # (H, W) body id, -1 for sky
        return rgba, seg

    def reference_view(self, obj_id, rng, size=64, appearance=APPEARANCES["fixed"]):
        """One object at the origin in a random orientation, photographed and lit as `appearance`
        draws: (size, size, 4) uint8 RGBA.

        Alpha is 255 on the object's pixels (from the segmentation) and 0 elsewhere, so any
        background colour can be composited later.
        """
        self._reset_world()
        body = self._load(obj_id, (0, 0, 0), random_orientation(rng))
        view = pb.computeViewMatrix(cameraEyePosition=appearance.reference_eye(rng), cameraTargetPosition=(0, 0, 0),
                                    cameraUpVector=(0, 0, 1))
        projection = pb.computeProjectionMatrixFOV(fov=50, aspect=1, nearVal=0.1, farVal=100)
        rgba, seg = self._camera_image(size, view, projection, appearance.lighting(rng))
        rgba = rgba.copy()
        rgba[..., 3] = np.where(seg == body, 255, 0)
        return rgba

    def scene(self, obj_ids, rng, size=640, grid=80, instances=4, camera=CameraRanges(),
              appearance=APPEARANCES["fixed"]):
        """Drops `instances` copies of each object on the table and photographs it from a camera
        drawn from `camera`'s ranges, lit as `appearance` draws.

        Returns ((size, size, 3) uint8 RGB, SceneLabels) with labels on a (grid, grid) grid.
        """
        if size % grid:
            raise ValueError(f"scene size {size} must be a multiple of the grid size {grid}")
        obj_ids = np.asarray(obj_ids, dtype=np.int16)
        self._reset_world()
        pb.setGravity(0, 0, -9.81, physicsClientId=self.client)
        table = pb.loadURDF(os.path.join(pybullet_data.getDataPath(), "table", "table.urdf"), TABLE_POSITION,
                            physicsClientId=self.client)

        drops = np.repeat(np.arange(len(obj_ids)), instances)  # object slot of each drop
        rng.shuffle(drops)
        bodies = {}  # pybullet body id -> (object slot, instance index)
        seen = np.zeros(len(obj_ids), dtype=int)
        for slot in drops:
            position = (rng.uniform(0, 1), rng.uniform(-0.25, 0.25), DROP_HEIGHT)
            body = self._load(int(obj_ids[slot]), position, random_orientation(rng))
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
        lighting, table_colour = appearance.lighting(rng), appearance.table_colour(rng)  # drawn last: see Appearance
        if table_colour is not None:
            pb.changeVisualShape(table, -1, rgbaColor=table_colour, physicsClientId=self.client)
        rgba, seg = self._camera_image(size, view, projection, lighting)
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
