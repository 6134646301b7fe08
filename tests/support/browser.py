"""The bundled Converse.js driven in headless Chromium (Playwright), every WebSocket frame kept.

Each page's WebSockets are relayed to the server through Playwright (``route_web_socket``),
so a test can cut one the way a network does; the frames are recorded as the page saw them
(``page.on("websocket")``), so assertions are about what the real client sent and received.
Tests wait on those frames (protocol events) and on what the page shows, never on sleep().
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plugins.webclient import DEFAULT_DIST
from tests.support.server import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
STEP = 60.0  # seconds one UI or protocol step may take on a loaded two-core machine


def launch_args(srv: ServerProcess) -> list[str]:
    """Chromium's flags, trusting the test server's certificates by their public keys.

    Rather than ignoring certificate errors: with them ignored Chromium caches nothing, and
    the OMEMO library then fetched its WebAssembly module (85 KB) from the server again for
    every key pair it made, about a hundred times per login, as no real browser does."""
    pins = []
    for crt in sorted((srv.tmp / "certs").glob("*.crt")):
        key = x509.load_pem_x509_certificate(crt.read_bytes()).public_key()
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        pins.append(base64.b64encode(hashlib.sha256(spki).digest()).decode())
    return [*ARGS, "--ignore-certificate-errors-spki-list=" + ",".join(pins)]


def require_browser() -> None:
    """Skip (fail in CI) when Chromium, the web client files or Playwright are missing."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append("chromium (apt-get install chromium)")
    if not (DEFAULT_DIST / "converse.min.js").exists():
        missing.append("the web client (npm ci --prefix web)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        msg = "browser test needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@dataclass
class Frame:
    """One WebSocket message as the page saw it (RFC 7395: one complete element each)."""

    at: float  # time.monotonic()
    sent: bool  # True: page -> server
    socket: int  # which of the page's WebSockets (0 = the first)
    text: str

    @property
    def el(self) -> ET.Element:
        return ET.fromstring(self.text)

    @property
    def name(self) -> str:
        return self.el.tag.rsplit("}", 1)[-1]


class FrameLog:
    """The frames of one page, with a way to wait for one that matches."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._added = asyncio.Event()

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)
        self._added.set()

    async def wait(self, what: str, match: Callable[[Frame], bool],
                   timeout: float = STEP, since: float = 0.0) -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if frame.at >= since and match(frame):
                    return frame
            seen = len(self.frames)
            self._added.clear()
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._added.wait(), left)
            except TimeoutError:
                raise AssertionError(f"no frame {what} within {timeout:.0f}s") from None

    def dump(self, path: Path) -> None:
        """Write the frames to ``path``, one a line: seconds, socket, direction, text."""
        start = self.frames[0].at if self.frames else 0.0
        path.write_text("".join(
            f"{f.at - start:8.3f} ws{f.socket} {'C>' if f.sent else 'S>'} {f.text}\n"
            for f in self.frames))

    async def answer(self, request: Frame, timeout: float = STEP) -> Frame:
        """The server's result or error for an IQ the page sent."""
        iq_id = request.el.get("id")
        return await self.wait(
            f"answering iq {iq_id}",
            lambda f: not f.sent and f.name == "iq" and f.el.get("id") == iq_id
            and f.el.get("type") in ("result", "error"), timeout, request.at)


@dataclass
class Relay:
    """One WebSocket of the page, relayed to the server by Playwright.

    ``partition()`` stops the traffic both ways without either end noticing (what a dead
    mobile link looks like); ``drop()`` then closes the page's side, so the client notices
    and reconnects while the server still holds the old connection open.
    """

    route: Any
    server: Any = None
    partitioned: bool = False
    swallowed: list[str] = field(default_factory=list)  # what the server sent into the gap
    server_closed: asyncio.Event = field(default_factory=asyncio.Event)
    _more: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: set[asyncio.Future[None]] = field(default_factory=set)

    def start(self) -> None:
        self.server = self.route.connect_to_server()
        self.route.on_message(self._from_page)
        self.server.on_message(self._from_server)
        self.route.on_close(self._page_closed)
        self.server.on_close(self._server_closed)

    def _from_page(self, message: str | bytes) -> None:
        if not self.partitioned:
            self.server.send(message)

    def _from_server(self, message: str | bytes) -> None:
        if self.partitioned:
            self.swallowed.append(message if isinstance(message, str) else message.decode())
            self._more.set()
        else:
            self.route.send(message)

    def _page_closed(self, code: int | None, reason: str | None) -> None:
        if not self.partitioned:
            self._close(self.server, code, reason)

    def _server_closed(self, code: int | None, reason: str | None) -> None:
        self.server_closed.set()
        if not self.partitioned:
            self._close(self.route, code, reason)

    def _close(self, side: Any, code: int | None, reason: str | None) -> None:
        closing = asyncio.ensure_future(side.close(code=code, reason=reason))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def partition(self) -> None:
        self.partitioned = True

    async def swallowed_all(self, ids: list[str], timeout: float = STEP) -> None:
        """Wait until the server has written a stanza with each of these ids into the gap."""
        def written(i: str) -> bool:
            return any(ET.fromstring(m).get("id") == i for m in self.swallowed)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(written(i) for i in ids):
            self._more.clear()
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._more.wait(), left)
            except TimeoutError:
                raise AssertionError(f"the server never wrote {ids} to the cut link") from None

    async def drop(self) -> None:
        await self.route.close(code=4000, reason="network lost")


class BrowserUser:
    """One user in their own browser context, logged in to /chat/."""

    def __init__(self, jid: str, password: str) -> None:
        self.jid = jid
        self.password = password
        self.log = FrameLog()
        self.relays: list[Relay] = []
        self.sockets = 0  # WebSockets the page opened
        self.logged_in = 0.0
        self.page: Any = None

    async def open(self, browser: Any, url: str) -> BrowserUser:
        context = await browser.new_context()
        self.page = await context.new_page()
        self.page.on("websocket", self._websocket)

        def relay(route: Any) -> None:
            r = Relay(route)
            self.relays.append(r)
            r.start()

        await self.page.route_web_socket("**/xmpp-websocket", relay)
        await self.page.goto(url)
        await self.page.fill("#converse-login-jid", self.jid.split("@")[0])
        await self.page.fill("#converse-login-password", self.password)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_selector("converse-roster", state="attached", timeout=STEP * 1000)
        self.logged_in = time.monotonic()
        return self

    def _websocket(self, ws: Any) -> None:
        index = self.sockets
        self.sockets += 1
        ws.on("framesent", lambda payload: self._frame(True, index, payload))
        ws.on("framereceived", lambda payload: self._frame(False, index, payload))

    def _frame(self, sent: bool, socket: int, payload: str | bytes) -> None:
        text = payload if isinstance(payload, str) else payload.decode()
        self.log.add(Frame(time.monotonic(), sent, socket, text))


async def send_text(page: Any, scope: str, text: str) -> None:
    """Type ``text`` into the chat ``scope`` (a selector) and wait until the sender's own copy
    shows.

    Under the full parallel suite on two cores, Converse.js may still be rendering the chat
    box (history fetch) when the text is typed, and the keystrokes can land in a textarea
    that is then replaced: the message is never sent. So the text is typed again when the
    box is empty and no copy has appeared; a duplicate would be harmless to what is checked.
    """
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    for _attempt in range(4):
        box = page.locator(f"{scope} textarea.chat-textarea").first
        await box.wait_for(state="visible", timeout=STEP * 1000)
        if not await box.input_value():
            await box.fill(text)
        await box.press("Enter")
        try:
            await page.locator(scope).get_by_text(text).first.wait_for(timeout=30000)
            return
        except PlaywrightTimeout:
            continue
    pytest.fail(f"the sender's copy of {text!r} never showed in the browser")
