"""Small shared helpers: argparse types with ranges, atomic writes, JSON files and directory swaps,
a run-dir lock, images on the training grey, and pictures of scenes, masks, boxes and reference
views. numpy and Pillow only: the ONNX runtime (runtime.py) imports it without JAX."""

import argparse
import colorsys
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys

import numpy as np
from PIL import Image, ImageDraw


def _number(kind, lo, hi, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi)):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, None, "a positive integer (1 or more)")
non_negative_int = _number(int, 0, None, "0 or more")
positive_float = _number(float, 1e-300, None, "a positive number")
non_negative_float = _number(float, 0.0, None, "0 or more")
unit_interval = _number(float, 0.0, 1.0, "a number from 0 to 1")
at_least_one = _number(float, 1.0, None, "a number of 1 or more")


class DataError(ValueError):
    """Input that cannot be used (a missing or broken file, a bad argument): its message is the one
    line to show, naming the thing and what to do."""


def flag_field(default, help, **argparse_options):
    """A dataclass field that is also a command-line flag: its help and argparse options (type,
    choices, ...) in its metadata (hyperparameters.Hyperparameters, inference.Inference)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_options})


def io_error_line(error, hint=True):
    """An OSError as the one line an entry point exits with: the file, what went wrong and (hint)
    what to do."""
    hint = hint and {28: "free some space and run the same command again: it carries on",
                     13: "choose a place you may write to", 30: "choose a place you may write to"}.get(error.errno, "")
    where = f"{error.filename}: " if error.filename else ""
    what = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]  # h5py's strerror runs to lines
    return f"error: {where}{what}" + (f" ({hint})" if hint else "")


def one_line(error, limit=160):
    """An exception's message on one line, cut to `limit` characters (Keras' run to many lines)."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def exits_in_one_line(interrupted="interrupted", errors=()):
    """The one way an entry point's main ends on an error: a DataError (or one of `errors`) exits
    with "error: MESSAGE", an OSError with io_error_line, Ctrl-C with `interrupted` (a line, or a
    function that prints what was done and returns the line): one line each, never a traceback."""
    try:
        yield
    except (DataError, *errors) as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(io_error_line(error))
    except KeyboardInterrupt:
        sys.exit(interrupted() if callable(interrupted) else interrupted)


# glibc's malloc hands each of XLA:CPU's large buffers out as a fresh mmap, so every step pays a
# page fault per 4 KB it writes (190,000 a step at the original's workload, a quarter of the
# step); asked to, it backs them with transparent huge pages instead: the train step 1.2-1.4x
# faster, the same results (docs/benchmarks.md). glibc reads it when a process starts, so
# v3_train.sh, sweep.py and bench.py set it for the processes they start.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_env(env):
    """A copy of env (os.environ) asking glibc's malloc for transparent huge pages, unless its
    GLIBC_TUNABLES already says (hugetlb=0 keeps them off)."""
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return dict(env)
    return {**env, "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE}


def temp_path(path, suffix=""):
    """A hidden name beside `path` that says which process writes it: .NAME.tmp-PID[suffix]."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_write(path, suffix=""):
    """Yields a temp path (a file or a directory the block makes) beside `path`, renamed onto
    `path` when the block succeeds and removed when it fails, so `path` is whole or absent.
    suffix: for writers that pick the format by the name's ending (".png", ".weights.h5")."""
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj, indent=1):
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
        f.write("\n")


def read_json(path):
    """A JSON file's contents; a DataError naming the file if it is missing or not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}): truncated or edited? Restore it, or remake what "
                        "holds it") from None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temps(path):
    """Removes what processes that died left beside `path`: .NAME.tmp-PID* and .NAME.old-PID
    (names only yolz gives); a .old-PID left while `path` is missing is the previous version,
    killed mid-swap: it is put back."""
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        return
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)")
    for entry in sorted(os.listdir(directory)):
        match = pattern.match(entry)
        if not match or pid_alive(int(match.group(2))):
            continue
        stale = os.path.join(directory, entry)
        if match.group(1) == "old" and not os.path.exists(path):
            os.rename(stale, path)
        elif os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.remove(stale)


def swap_dir(new, path):
    """Puts directory `new` at `path`, replacing a directory there, so that `path` always holds
    a whole one: the old one is renamed aside, the new one in, then the old one deleted. A kill
    between the two renames leaves .NAME.old-PID, which remove_stale_temps puts back."""
    directory, name = os.path.split(os.path.abspath(path))
    old = os.path.join(directory, f".{name}.old-{os.getpid()}")
    had_old = os.path.exists(path)
    if had_old:
        os.rename(path, old)
    os.rename(new, path)
    if had_old:
        shutil.rmtree(old)


GREY = 128  # the background every reference view and letterboxed scene is composited on


def composite(rgba, background):
    """RGBA views over a background colour; works on numpy and jax arrays alike.

    rgba (..., h, w, 4) uint8, background (..., 3) uint8 -> (..., h, w, 3) float32 in [0, 1].
    """
    alpha = rgba[..., 3:].astype("float32") / 255
    rgb = rgba[..., :3].astype("float32") / 255
    background = background[..., None, None, :].astype("float32") / 255
    return rgb * alpha + background * (1 - alpha)


def composite_uint8(rgba, background):
    """composite() as a picture: (..., h, w, 4) uint8 RGBA on (..., 3) uint8 -> (..., h, w, 3) uint8, rounded."""
    return np.round(np.asarray(composite(rgba, background)) * 255).astype(np.uint8)


def palette(k):
    """k distinct saturated colours as (k, 3) uint8."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(i / k, 0.85, 1.0)] for i in range(k)],
                    dtype=np.uint8)


def upsample(mask, size):
    """(G, G) grid -> (size, size) by nearest neighbour; size must be a multiple of G."""
    factor = size // mask.shape[0]
    return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)


def tint(image, mask, colour, strength=0.5):
    """Blends `colour` into the (H, W, 3) uint8 image where the (G, G) mask is set."""
    m = upsample(np.asarray(mask, dtype=np.float32), image.shape[0])[..., None] * strength  # (H, W, 1)
    return (image * (1 - m) + np.asarray(colour, np.float32) * m).astype(np.uint8)


def heatmap(image, probs):
    """(H, W, 3) uint8 image, greyed, under a colour map (blue 0 .. red 1) of the probabilities:
    (G, G) on a square image, or (H, W) already at the image's size.

    The colour's opacity grows with the probability, so the scene shows through where P is low.
    """
    x = np.clip(np.asarray(probs, np.float32), 0, 1)
    x = (x if x.shape == image.shape[:2] else upsample(x, image.shape[0]))[..., None]  # (H, W, 1)
    grey = np.repeat(np.asarray(image, np.float32).mean(axis=-1, keepdims=True), 3, axis=-1)  # (H, W, 3)
    # a cheap "jet": blue -> cyan -> yellow -> red
    colours = np.concatenate([np.clip(1.5 - np.abs(4 * x - k), 0, 1) for k in (3, 2, 1)], axis=-1) * 255
    alpha = np.minimum(1.0, 0.9 * np.sqrt(x))
    return (grey * (1 - alpha) + colours * alpha).astype(np.uint8)


def draw_boxes(image, boxes, colours, labels=None, width=2):
    """(H, W, 3) uint8 image with (n, 4) pixel boxes (x0, y0, x1, y1; exclusive ends) drawn on it."""
    out = Image.fromarray(np.asarray(image))
    draw = ImageDraw.Draw(out)
    for i, (box, colour) in enumerate(zip(boxes, colours)):
        x0, y0, x1, y1 = (int(v) for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=tuple(int(c) for c in colour), width=width)
        if labels is not None:
            draw.text((x0 + 2, y0 + 1), str(labels[i]), fill=tuple(int(c) for c in colour))
    return np.asarray(out)


def border(image, colour, width=3):
    out = np.array(image)
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def tile(images, columns, pad=2, fill=255):
    """Lays out same-sized (h, w, 3) images in rows of `columns`."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return sheet


def hstack(images, pad=4, fill=255):
    """Side by side, top-aligned, images of any height."""
    height = max(i.shape[0] for i in images)
    padded = [np.pad(i, ((0, height - i.shape[0]), (0, pad), (0, 0)), constant_values=fill) for i in images]
    return np.concatenate(padded, axis=1)


def vstack(images, pad=4, fill=255):
    width = max(i.shape[1] for i in images)
    padded = [np.pad(i, ((0, pad), (0, width - i.shape[1]), (0, 0)), constant_values=fill) for i in images]
    return np.concatenate(padded, axis=0)


def save_figure(path, fig):
    """Writes a matplotlib figure as a PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_write(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def save_png(path, image):
    """Writes an (H, W, 3) uint8 image atomically, in the format the path's suffix names."""
    with atomic_write(path, suffix=os.path.splitext(path)[1]) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp)
