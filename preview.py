"""Contact sheet of generated data, to look at what the renderer made.

    python preview.py --data-dir data/small --split train --num-scenes 3   # a second

One row per scene: the scene with every visible instance's box (one colour per object, its id
written on it) | the scene tinted with each object's 80x80-style box mask (the training target)
and outlined with its visible-pixel mask | the first reference view of each of its objects,
composited on grey, framed in the object's colour.
"""

import argparse
import os

import numpy as np

from boxes import visible
from data import Split
from util import (GREY, DataError, border, composite_uint8, draw_boxes, exits_in_one_line, hstack, palette, save_png,
    tile, tint, vstack)


def scene_row(split, index):
    scene = split.scene(index)
    rgb, obj_ids = np.asarray(scene["rgb"]), scene["obj_ids"]  # (H, W, 3) uint8, (K,) int16
    colours = palette(len(obj_ids))  # (K, 3) uint8
    boxes, box_colours, labels = [], [], []
    for k, instances in enumerate(scene["boxes"]):  # (I, 4) per object
        for box in visible(instances):
            boxes.append(box)
            box_colours.append(colours[k])
            labels.append(int(obj_ids[k]))
    with_boxes = draw_boxes(rgb, boxes, box_colours, labels)
    with_masks = rgb
    for k in range(len(obj_ids)):
        with_masks = tint(with_masks, scene["box_masks"][k], colours[k], strength=0.45)
        with_masks = tint(with_masks, scene["visible_masks"][k], colours[k], strength=0.35)
    views = [split.views(obj_id)[0] for obj_id in obj_ids]  # K x (h, w, 4) uint8
    grey = np.full(3, GREY, dtype=np.uint8)
    views = [border(composite_uint8(v, grey), colours[k]) for k, v in enumerate(views)]
    return hstack([with_boxes, with_masks, tile(views, columns=4)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="a dir made by generate_data.py")
    parser.add_argument("--split", default="train", choices=("train", "validation", "test"))
    parser.add_argument("--num-scenes", type=int, default=3, help="rows: the split's first scenes")
    parser.add_argument("--out", help="PNG to write; default DATA_DIR/preview_SPLIT.png")
    args = parser.parse_args(argv)
    split = Split(args.data_dir, args.split)
    if not 0 < args.num_scenes <= split.num_scenes:
        raise DataError(f"--num-scenes must be 1 to {split.num_scenes}, the scenes in {args.split}")
    out = args.out or os.path.join(args.data_dir, f"preview_{args.split}.png")
    save_png(out, vstack([scene_row(split, i) for i in range(args.num_scenes)], pad=8))
    print(f"wrote {out}")


if __name__ == "__main__":
    with exits_in_one_line():
        main()
