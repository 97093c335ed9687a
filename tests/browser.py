"""A small Chrome DevTools Protocol client over `--remote-debugging-pipe`, stdlib only.

Chromium reads commands on its fd 3 and writes replies and events on its fd 4; each message is JSON
followed by a NUL byte. Every wait has a deadline, so a hung browser fails the test instead of hanging it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

TIMEOUT = 30.0  # seconds for any one command or wait; a healthy browser answers in well under one

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing can leave even if a URL slipped in
    "--remote-debugging-pipe",
]


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str:
    """Debian's chromium; the assertion tells the reader how to get it rather than skipping silently."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for the report page test: `make test` installs it"
    return found


class Browser:
    """One headless Chromium with one page attached (flattened session); use as a context manager."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900, timeout: float = TIMEOUT):
        executable = find_chromium()
        self.timeout = timeout
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.log = Path(f"{profile}.log")  # a file, not a pipe: nobody reads a pipe while we wait, and it would fill
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()

        def give_child_fds_3_and_4() -> None:
            # Move both ends above 10 first, so that placing one on 3 or 4 cannot clobber the other.
            high_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
            high_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        # pass_fds keeps 3 and 4 open through exec. They exist here (the pipes above took the lowest free
        # numbers, so 3 and 4 are ours or were taken before), which is what subprocess needs of them.
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(3, 4),
                preexec_fn=give_child_fds_3_and_4,
            )
        os.close(commands_read)
        os.close(replies_write)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call(
                "Emulation.setDeviceMetricsOverride",
                session=True,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Ask the browser to quit, then make sure it has; the pipes close with it."""
        if self.process.poll() is None:
            try:
                self.send("Browser.close")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)
        for descriptor in (self.commands, self.replies):
            try:
                os.close(descriptor)
            except OSError:
                pass

    # -- the protocol ---------------------------------------------------------------------------------

    def send(self, method: str, session: bool = False, **params: Any) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        return self.next_id

    def receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        """The next message from the browser; BrowserError when none comes before `deadline`."""
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.replies], [], [], remaining)[0]:
                raise BrowserError(
                    f"no answer from chromium within {self.timeout:.0f} s while waiting for {waiting_for}"
                )
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""
                raise BrowserError(f"chromium closed the pipe while waiting for {waiting_for}; its log ends:\n{log}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile are kept for `wait_event`."""
        number = self.send(method, session, **params)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self.receive(deadline, method)
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the attached page."""
        return self.call(method, session=True, **params)

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first event called `method` (already received or still to come); it is consumed."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)["params"]
            message = self.receive(deadline, method)
            if "method" in message:
                self.events.append(message)

    # -- what a test does with a page -----------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.page("Page.enable")
        self.page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(
                f"{expression!r} threw: {result['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise BrowserError(f"{expression!r} stayed falsy for {self.timeout:.0f} s")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the first element matching `selector`."""
        centre = self.evaluate(
            f"(() => {{ const element = document.querySelector({json.dumps(selector)}); if (!element) return null;"
            " element.scrollIntoView({block: 'center'}); const box = element.getBoundingClientRect();"
            " return [box.x + box.width / 2, box.y + box.height / 2]; })()"
        )
        if centre is None:
            raise BrowserError(f"nothing matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=centre[0], y=centre[1], button="left", clickCount=1)

    def press(self, key: str, code: int) -> None:
        """A key press, e.g. press("Escape", 27)."""
        for kind in ("keyDown", "keyUp"):
            self.page("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        """The whole page (or only what the viewport shows) as a PNG."""
        if full_page:
            size = self.page("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            data = self.page("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        else:
            data = self.page("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
