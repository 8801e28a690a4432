"""A real headless Chromium (Debian's `chromium`), driven through the DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages separated by NUL bytes on file descriptors 3 and 4), so that no
websocket client is needed. Its network is off: every request that is not a file: or data: URL goes to a
proxy on a closed loopback port, and every request the page makes is recorded (Network.requestWillBeSent),
as is everything written to the console or thrown.

    with Chromium() as browser:
        browser.open(path)                    # waits for the load event
        browser.evaluate("document.title")
        browser.click(x, y)                   # a real mouse click (pressed and released)
        png = browser.screenshot()
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 1280, 900


class ChromiumError(RuntimeError):
    pass


def chromium_binary() -> str:
    """The chromium executable; a clear failure (not a skip) where it is missing: .ci/setup installs it."""
    found = shutil.which("chromium")
    if found is None:
        raise ChromiumError("no chromium on PATH: run .ci/setup (it installs Debian's chromium)")
    return found


class Chromium:
    def __init__(self, width: int = WIDTH, height: int = HEIGHT, timeout: float = 30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        to_child, self._write = os.pipe()  # fd 3 of the child: what it reads
        self._read, from_child = os.pipe()  # fd 4 of the child: what it writes

        def fds():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.process = subprocess.Popen(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}",
             "--hide-scrollbars", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._next, self.events = b"", 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=True)

    # ------------------------------------------------------------------ protocol

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise ChromiumError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ChromiumError(f"chromium closed the pipe (exit {self.process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        """Send a command (to the page's session where `session`) and return its result; events that arrive
        meanwhile are kept in self.events."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise ChromiumError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str) -> dict:
        """The first event `method` not seen yet (kept events included)."""
        deadline = time.monotonic() + self.timeout
        seen = len(self.events)
        for event in self.events:
            if event.get("method") == method and not event.get("_used"):
                event["_used"] = True
                return event
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method and len(self.events) > seen:
                event["_used"] = True
                return event

    # ------------------------------------------------------------------ what a test does

    def open(self, path: Path) -> float:
        """Load a file and wait for its load event; the seconds it took."""
        self.events.clear()
        began = time.perf_counter()
        self.call("Page.navigate", {"url": Path(path).absolute().as_uri()}, session=True)
        self.wait_for("Page.loadEventFired")
        return time.perf_counter() - began

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise ChromiumError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A left click at (x, y) of the viewport, as a mouse makes it."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "clickCount": 1}, session=True)

    def screenshot(self, full_page: bool = False) -> bytes:
        """A PNG of the viewport, or of the whole page (at the window's width)."""
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        return base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])

    def console_errors(self) -> list[str]:
        """Everything the page wrote to the console as an error, threw, or the browser logged as an error."""
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("exception", {}).get("description")
                              or params["exceptionDetails"].get("text"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        return errors

    def requests(self) -> list[str]:
        """The URL of every request the page made since it was opened."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (ChromiumError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
