"""A local web demo: drop a scene and a few reference pictures of an object (or pick a test-split
example) and see where yolz finds it: boxes, and the heatmap of P(object) per cell.

    .venv/bin/pip install -r requirements-demo.txt
    .venv/bin/python app.py                  # then open http://127.0.0.1:7860

Serves on this machine only (127.0.0.1) unless --host says otherwise. The same answer is an HTTP
API (api_name "find"): gradio_client.Client(URL).predict(handle_file(scene), [handle_file(view),
...], threshold, far, api_name="/find") -> (boxes image, heatmap image, detections); far True also
looks for objects smaller than training's (a camera farther away). Needs no network.
"""

import argparse
import importlib.util
import os
import signal
import socket
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

from PIL import Image  # noqa: E402

from data import Split  # noqa: E402
from detect import BACKENDS, Detector, as_rgba, draw, image_size, on_grey  # noqa: E402
from inference import PYRAMID_SCALES, Inference  # noqa: E402
from util import DataError, exits_in_one_line, heatmap, positive_int  # noqa: E402

EXAMPLE_SCENES = (5, 17, 30)  # test-split scenes offered as examples, each with its first object's views


def write_examples(data_dir, folder):
    """Test-split scenes and 4 views of one of their objects as PNGs -> gr.Examples rows; [] when
    the data dir has no test split."""
    try:
        split = Split(data_dir, "test", verify=False)
    except DataError:
        return []
    rows = []
    for index in [i for i in EXAMPLE_SCENES if i < split.num_scenes] or [0]:
        scene = split.scene(index)
        paths = [os.path.join(folder, f"scene_{index}.png")]
        Image.fromarray(scene["rgb"]).save(paths[0])
        for i, view in enumerate(split.views(scene["obj_ids"][0])[:4]):
            paths.append(os.path.join(folder, f"scene_{index}_object_{scene['obj_ids'][0]}_{i}.png"))
            Image.fromarray(view).save(paths[-1])
        rows.append([paths[0], paths[1:], None, False])
    return rows


def answer(detector, scene, references, threshold, far=False):
    """The page's one action: (scene path or array, reference paths, threshold or None, far camera)
    -> (boxes drawn, heatmap, {"detections": [{"box", "score"}], "threshold", "far"}); a DataError
    says what is wrong with the input."""
    if scene is None:
        raise DataError("drop a scene image first")
    if not references:
        raise DataError("add at least one reference picture of the object")
    rgba = as_rgba(scene)  # at most MAX_IMAGE_SIDE on its longer side; the boxes come back in the file's pixels
    size = image_size(scene) if isinstance(scene, str) else None
    threshold = detector.threshold if threshold is None else threshold
    found = detector.find(rgba, {"object": list(references)}, size=size, threshold=threshold,
                          pyramid_scales=PYRAMID_SCALES if far else None)["object"]
    boxes = draw(rgba, {"object": found}, size)
    heat = heatmap(on_grey(rgba), found["heatmap"])
    detections = [{"box": b.tolist(), "score": round(float(s), 4)} for b, s in zip(found["boxes"], found["scores"])]
    return boxes, heat, {"threshold": float(threshold), "far": bool(far), "detections": detections}


def shown(action):
    """action with its DataError shown on the page as it is (gradio shows other errors as a bare "Error")."""
    import gradio as gr

    def act(*args):
        try:
            return action(*args)
        except DataError as error:
            raise gr.Error(str(error)) from None

    return act


def build(detector, examples=()):
    import gradio as gr

    with gr.Blocks(title="yolz", delete_cache=(600, 3600)) as demo:  # uploads kept an hour at most
        gr.Markdown("# yolz: find an object you never trained on\nDrop a scene and a few pictures of one object "
                    "(views on a plain or transparent background work best), or pick an example from the test split "
                    "(objects 900-999, never seen in training).")
        with gr.Row():
            scene = gr.Image(label="scene", type="filepath", image_mode="RGBA")
            references = gr.File(label="reference pictures of the object", file_count="multiple",
                                 file_types=["image"], type="filepath")
        # the run's threshold has three decimals (evaluate.budget_threshold): a coarser step would round it off
        threshold = gr.Slider(0, 1, value=detector.threshold, step=0.001,
                              label=f"lowest box score shown (the run's operating threshold: {detector.threshold})")
        far = gr.Checkbox(value=False, label="far camera: also look for objects smaller than in training (the scene "
                                             "enlarged 2x, in 9 tiles: slower, more false alarms on close-up scenes)")
        button = gr.Button("find it", variant="primary")
        with gr.Row():
            boxes = gr.Image(label="boxes", type="numpy")
            heat = gr.Image(label="P(object) per cell", type="numpy")
        detections = gr.JSON(label="detections (x0, y0, x1, y1 in the scene's pixels)")
        button.click(shown(lambda s, r, t, f: answer(detector, s, r, t, f)), [scene, references, threshold, far],
                     [boxes, heat, detections], api_name="find")
        if examples:
            gr.Examples(examples, [scene, references, threshold, far], label="test-split examples")

            def open_example(request: gr.Request):
                """PAGE?example=i opens with example i found: a link that shows a result at once."""
                try:
                    scene_path, views, *_ = examples[int(request.query_params.get("example", ""))]
                except (ValueError, IndexError):
                    return None, None, None, None, None
                return scene_path, views, *answer(detector, scene_path, views, None)

            demo.load(shown(open_example), None, [scene, references, boxes, heat, detections])
    return demo


def port_number(text):
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return port


def check_port_free(host, port):
    """A DataError if another program serves on host:port (checked before the model loads)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise DataError(f"--port {port} on {host}: {error.strerror}: stop what serves there, or give another "
                            "--port") from None


def stop_on_sigterm():
    """SIGTERM (kill, a service manager) stops the demo as Ctrl-C does, so its temp dir is removed."""
    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="pretrained", help="a trained run with a box head, or with --backend onnx "
                        "what export.py made of one (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="jax",
                        help="jax, or onnx: onnxruntime on export.py's files (default: %(default)s)")
    parser.add_argument("--data-dir", default="data/small", help="whose test split gives the examples (optional)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    parser.add_argument("--port", type=port_number, default=7860)
    parser.add_argument("--max-upload-mb", type=positive_int, default=50,
                        help="the largest file the page accepts, in MB (default: %(default)s)")
    Inference.add_flags(parser.add_argument_group("inference (the page's threshold slider starts at --threshold)"))
    args = parser.parse_args(argv)
    if importlib.util.find_spec("gradio") is None:
        sys.exit("error: the demo needs gradio: .venv/bin/pip install -r requirements-demo.txt")
    stop_on_sigterm()
    with exits_in_one_line("stopped"):
        check_port_free(args.host, args.port)
        detector = Detector(args.run_dir, args.backend, **Inference.from_flags(args))
        with tempfile.TemporaryDirectory(prefix="yolz-app-") as folder:
            os.environ["GRADIO_TEMP_DIR"] = os.path.join(folder, "uploads")  # gone with the folder
            demo = build(detector, write_examples(args.data_dir, folder))
            print(f"yolz demo of {args.run_dir} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
            demo.launch(server_name=args.host, server_port=args.port, share=False, allowed_paths=[folder],
                        max_file_size=f"{args.max_upload_mb}mb")


if __name__ == "__main__":
    main()
