"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
NUL-separated JSON on fds 3 and 4), so that no driver package is needed. Used by test_app.py,
and to take the demo's screenshot in the docs:

    .venv/bin/python app.py &                       # then, once it serves:
    .venv/bin/python tests/browser.py "http://127.0.0.1:7860/?example=0" docs/demo.png
"""

import base64
import fcntl
import json
import os
import shutil
import signal
import sys
import time

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
RESULT_SHOWN = "Array.from(document.querySelectorAll('img')).some(i => i.src.includes('image.webp'))"


class Chromium:
    def __init__(self, width=1280, height=1100):
        low_in, self._write = os.pipe()
        self._read, low_out = os.pipe()
        # copies above 4, so that putting one on 3 or 4 cannot overwrite the other
        to_chrome, from_chrome = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (low_in, low_out))
        # posix_spawn puts them on 3 and 4 in the child (no fork: forking a process running JAX warns)
        self.pid = os.posix_spawn(CHROMIUM, [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                                             "--remote-debugging-pipe", f"--window-size={width},{height}",
                                             "about:blank"], os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, to_chrome, 3), (os.POSIX_SPAWN_DUP2, from_chrome, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        for fd in (low_in, low_out, to_chrome, from_chrome):
            os.close(fd)
        self._buffer, self._id = b"", 0
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]

    def call(self, method, session=None, **params):
        """One DevTools command -> its result (events in between are skipped)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its pipe")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open_and_wait(self, url, condition, timeout=120):
        """Loads url, then polls the JavaScript condition -> whether it came true in time."""
        self.call("Page.navigate", self.session, url=url)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.evaluate(condition):
                time.sleep(1)  # the rest of the result renders
                return True
            time.sleep(0.5)
        return False

    def screenshot(self):
        """-> the whole page as PNG bytes."""
        data = self.call("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True)["data"]
        return base64.b64decode(data)

    def close(self):
        os.kill(self.pid, signal.SIGTERM)
        os.waitpid(self.pid, 0)
        os.close(self._write)
        os.close(self._read)


if __name__ == "__main__":
    url, out = sys.argv[1:3]
    browser = Chromium()
    try:
        if not browser.open_and_wait(url, RESULT_SHOWN):
            sys.exit(f"error: no result appeared on {url} within 2 minutes")
        with open(out, "wb") as f:
            f.write(browser.screenshot())
    finally:
        browser.close()
    print(f"wrote {out}")
