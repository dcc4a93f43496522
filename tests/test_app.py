"""The web demo, served for real on localhost and driven through its HTTP API with gradio's own
client: a real request, the real (tiny) model, boxes back; and, where Chromium is installed, the
page loaded in it until a result shows. Skipped where gradio is not installed (it is optional:
requirements-demo.txt; run_tests.sh installs it)."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from browser import CHROMIUM, RESULT_SHOWN, Chromium
from conftest import REPO

pytest.importorskip("gradio", reason="optional: pip install -r requirements-demo.txt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_data, trained, tmp_path_factory):
    """app.py serving the tiny trained run, started once for the module."""
    tmp_path = tmp_path_factory.mktemp("app")
    port = free_port()
    log = open(tmp_path / "app.log", "w+")
    process = subprocess.Popen([sys.executable, "app.py", "--run-dir", str(trained), "--data-dir", tiny_data,
                                "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while "Running on" not in open(tmp_path / "app.log").read():
            assert process.poll() is None and time.time() < deadline, open(tmp_path / "app.log").read()
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def test_the_demo_answers_a_real_request_with_boxes(server, tiny_data, trained, tmp_path):
    from gradio_client import Client, handle_file

    import app
    import detect
    import inference
    from data import Split

    split = Split(tiny_data, "test")
    scene = split.scene(0)
    Image.fromarray(scene["rgb"]).save(tmp_path / "scene.png")
    views = []
    for i, view in enumerate(split.views(scene["obj_ids"][0])[:3]):
        Image.fromarray(view).save(tmp_path / f"view{i}.png")
        views.append(handle_file(str(tmp_path / f"view{i}.png")))
    client = Client(server, verbose=False)
    boxes, heat, found = client.predict(handle_file(str(tmp_path / "scene.png")), views, 0.0, False, api_name="/find")
    assert found["threshold"] == 0.0 and found["detections"], "at threshold 0 every surviving box comes back"
    box = np.array([d["box"] for d in found["detections"]])
    assert (box >= 0).all() and (box[:, [0, 2]] <= 128).all() and (box[:, [1, 3]] <= 128).all()
    assert np.asarray(Image.open(boxes)).shape[:2] == (128, 128) and os.path.exists(heat)

    # "far camera" asks for the scene pyramid (test_detect.py checks what it adds): the Detector's answer
    _, _, far = client.predict(handle_file(str(tmp_path / "scene.png")), views, 0.0, True, api_name="/find")
    expected = detect.Detector(str(trained), threshold=0).find(
        str(tmp_path / "scene.png"), {"object": [str(tmp_path / f"view{i}.png") for i in range(3)]},
        pyramid_scales=inference.PYRAMID_SCALES)["object"]
    assert far["far"] and not found["far"]
    assert [d["box"] for d in far["detections"]] == expected["boxes"].tolist() != box.tolist()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium (Debian) to load the page in a "
                    "real browser")
def test_the_page_shows_a_result_in_a_real_browser(server):
    browser = Chromium()
    try:  # ?example=0 opens the page with the first test-split example and runs it
        assert browser.open_and_wait(f"{server}/?example=0", RESULT_SHOWN), "no boxes image appeared"
        text = browser.evaluate("document.body.innerText")
        assert "threshold" in text and "detections" in text and "find it" in text
        assert browser.screenshot()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        browser.close()


def test_the_demos_own_messages_reach_the_page():
    import gradio as gr

    import app

    for scene, references, message in ((None, ["v.png"], "drop a scene image first"),
                                       ("s.png", [], "add at least one reference picture")):
        with pytest.raises(gr.Error, match=message):
            app.shown(lambda: app.answer(None, scene, references, None))()


def test_a_bad_or_busy_port_is_one_line(trained, capsys):
    import app

    for port in ("0", "70000", "http"):
        with pytest.raises(SystemExit) as error:
            app.main(["--run-dir", str(trained), "--port", port])
        assert error.value.code == 2 and "is not a port (1 to 65535)" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"^error: --port {port} on 127.0.0.1: Address already in use: stop "):
            app.main(["--run-dir", str(trained), "--port", str(port)])


def test_uploads_are_bounded_and_sigterm_leaves_no_temp_dir(trained, tmp_path):
    """A file over --max-upload-mb is refused; SIGTERM (kill, a service manager) stops the server
    as Ctrl-C does: the demo's temp dir, the examples and the uploads in it, is gone."""
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    log = open(tmp_path / "app.log", "w+")
    process = subprocess.Popen([sys.executable, "app.py", "--run-dir", str(trained), "--port", str(port),
                                "--max-upload-mb", "1"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TMPDIR": str(temp)})
    try:
        deadline = time.time() + 180
        while "Running on" not in open(tmp_path / "app.log").read():
            assert process.poll() is None and time.time() < deadline, open(tmp_path / "app.log").read()
            time.sleep(0.5)
        (tmp_path / "big.png").write_bytes(os.urandom(2 * 1024 * 1024))  # 2 MB, and no image at that
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        with pytest.raises(Exception, match="(?i)too large|exceeds|413|maximum"):
            client.predict(handle_file(str(tmp_path / "big.png")), [handle_file(str(tmp_path / "big.png"))], 0.0,
                           False, api_name="/find")
        assert [n for n in os.listdir(temp) if n.startswith("yolz-app-")]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert not [n for n in os.listdir(temp) if n.startswith("yolz-app-")], open(tmp_path / "app.log").read()
