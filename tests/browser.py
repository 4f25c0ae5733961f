"""Open a page in headless Chromium and report what a reader would see: images that did not load,
console errors, horizontal overflow, and a full-page screenshot.

Talks the DevTools protocol over --remote-debugging-pipe (NUL-separated JSON on file descriptors 3
and 4), so it needs nothing but Debian's `chromium` package: no driver, no websocket client.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHECK = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0,
           shown: [i.width, i.height], natural: [i.naturalWidth, i.naturalHeight]})),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  height: document.documentElement.scrollHeight,
})"""


def _high(fd: int) -> int:
    """The same pipe end as a descriptor above 3 and 4 (where the browser expects its pipes)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)


class Page:
    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        r3, self.to_browser = (_high(fd) for fd in os.pipe())
        self.from_browser, w4 = (_high(fd) for fd in os.pipe())
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", "--no-first-run", "--hide-scrollbars", "about:blank"]  # fmt: skip

        # the browser reads commands on fd 3 and writes answers on fd 4: the shell puts the pipes there
        command = f'exec "$@" 3<&{r3} 4>&{w4} {r3}<&- {w4}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", command, "bash", *args],
            pass_fds=(r3, w4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(r3)
        os.close(w4)
        self.buffer, self.next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: str | None = None, **params) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            if not select.select([self.from_browser], [], [], 1.0)[0]:
                continue
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, timeout: float = 60, session: bool = False, **params) -> dict:
        wanted = self.send(method, self.session if session else None, **params)
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        if any(m.get("method") == event for m in self.events):
            return
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(deadline)
            self.events.append(message)
            if message.get("method") == event:
                return

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)


def console_errors(events: list[dict]) -> list[str]:
    found = []
    for m in events:
        p = m.get("params", {})
        if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m.get("method") == "Runtime.exceptionThrown":
            found.append(p["exceptionDetails"].get("text", "exception"))
        elif m.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            found.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return found


def inspect(binary: str, page: Path, screenshot: Path, width: int = 1280) -> dict:
    """Load `page`, wait for it, and return {images, overflow, height, errors}; save a full-page PNG."""
    tab = Page(binary)
    try:
        for domain in ("Page", "Runtime", "Log"):
            tab.call(f"{domain}.enable", session=True)
        tab.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=900,
                 deviceScaleFactor=1, mobile=False)  # fmt: skip
        tab.call("Page.navigate", session=True, url=page.resolve().as_uri())
        tab.wait_for("Page.loadEventFired")
        found = json.loads(
            tab.call("Runtime.evaluate", session=True, expression=CHECK, returnByValue=True)["result"]["value"]
        )
        shot = tab.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": width, "height": found["height"], "scale": 1})  # fmt: skip
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)  # late console messages
        tab.call("Runtime.evaluate", session=True, expression="1")
        return found | {"errors": console_errors(tab.events)}
    finally:
        tab.close()
