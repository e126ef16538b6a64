"""Open a page in headless Chromium through the DevTools protocol and say what it did.

A report must open offline: ``open_in_chromium`` loads it from its
``file://`` URL and returns every request the page made, every image with
its decoded size, every console error, exception and error log entry, every
JavaScript dialog, and the page's visible text. The websocket client is
aiohttp's, which the project already has; Chromium is Debian's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
STARTUP_SECONDS = 30.0
# Every image with its natural size once decoding has finished (or failed).
IMAGES = """
Promise.all(Array.from(document.images, (image) => image.decode().then(() => true, () => false).then((decoded) => ({
    src: image.getAttribute("src").slice(0, 40),
    width: image.naturalWidth,
    height: image.naturalHeight,
    decoded: decoded,
}))))
"""


@dataclass
class PageReport:
    """What a page did while it loaded."""

    url: str
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def foreign_requests(self) -> list[str]:
        """Requests for anything but the page itself and ``data:`` URIs."""
        return [url for url in self.requests if url != self.url and not url.startswith("data:")]

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, together."""
        return self.console_errors + self.exceptions + self.log_errors


def chromium() -> Path | None:
    """Debian's Chromium, or another on PATH; None where there is none."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def open_in_chromium(path: Path, timeout: float = 60.0) -> PageReport:
    """Load ``path`` in a fresh headless Chromium profile and report what the page did."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium at {CHROMIUM} or on PATH")
    return asyncio.run(asyncio.wait_for(_open(binary, Path(path).resolve().as_uri()), timeout))


async def _open(binary: Path, url: str) -> PageReport:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            endpoint = await _endpoint(Path(profile), process)
            async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as socket:
                devtools = _DevTools(socket)
                try:
                    return await _visit(devtools, url)
                finally:
                    await devtools.close()
        finally:
            await _stop(process)


async def _endpoint(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's websocket address, from the ``DevToolsActivePort`` file Chromium writes at start."""
    port_file = profile / "DevToolsActivePort"
    for _ in range(int(STARTUP_SECONDS * 10)):
        if process.returncode is not None:
            raise RuntimeError(f"Chromium exited with status {process.returncode} before it listened")
        lines = port_file.read_text().split() if port_file.is_file() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.1)
    raise TimeoutError(f"Chromium wrote no {port_file} within {STARTUP_SECONDS:.0f} s")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End the browser this module started (its renderers end with it)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _visit(devtools: _DevTools, url: str) -> PageReport:
    target = await devtools.send("Target.createTarget", {"url": "about:blank"})
    attached = await devtools.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
    session = attached["sessionId"]
    for domain in ("Page", "Network", "Runtime", "Log"):
        await devtools.send(f"{domain}.enable", session=session)
    await devtools.send("Page.navigate", {"url": url}, session=session)
    await devtools.wait_for("Page.loadEventFired", session)
    images = await devtools.evaluate(IMAGES, session)
    text = await devtools.evaluate("document.body ? document.body.innerText : ''", session)
    report = PageReport(url, images=images, text=text)
    for event in devtools.events:
        if event.get("sessionId") == session:
            _record(report, event["method"], event.get("params", {}))
    return report


def _record(report: PageReport, method: str, params: dict) -> None:
    """File one DevTools event under what it says about the page."""
    if method == "Network.requestWillBeSent":
        report.requests.append(params["request"]["url"])
    elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
        report.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        report.exceptions.append(details.get("exception", {}).get("description", details.get("text", "")))
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        report.log_errors.append(f"{params['entry'].get('text', '')} ({params['entry'].get('url', '')})")
    elif method == "Page.javascriptDialogOpening":
        report.dialogs.append(f"{params.get('type')}: {params.get('message')}")


class _DevTools:
    """A DevTools protocol connection: commands with replies, and every event kept in order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.arrived = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        message: dict = {"id": next(self.ids), "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        reply = asyncio.get_running_loop().create_future()
        self.pending[message["id"]] = reply
        await self.socket.send_str(json.dumps(message))
        result = await reply
        if "error" in result:
            raise RuntimeError(f"{method}: {result['error']}")
        return result.get("result", {})

    async def evaluate(self, expression: str, session: str) -> object:
        """The value of ``expression`` in the page, awaited where it is a promise."""
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        result = await self.send("Runtime.evaluate", params, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating in the page failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, method: str, session: str) -> None:
        """Until an event ``method`` of ``session`` has arrived."""
        while not any(e["method"] == method and e.get("sessionId") == session for e in self.events):
            self.arrived.clear()
            await self.arrived.wait()

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError, ConnectionError, TimeoutError, aiohttp.ClientError):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader

    async def _read(self) -> None:
        try:
            await self._dispatch()
        finally:
            for reply in self.pending.values():
                if not reply.done():
                    reply.set_exception(ConnectionError("the DevTools connection closed"))

    async def _dispatch(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                reply = self.pending.pop(data["id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(data)
                continue
            self.events.append(data)
            self.arrived.set()
            if data.get("method") == "Page.javascriptDialogOpening":
                # An open dialog blocks the page; it is recorded, then dismissed.
                task = asyncio.create_task(
                    self.send("Page.handleJavaScriptDialog", {"accept": True}, session=data.get("sessionId"))
                )
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
