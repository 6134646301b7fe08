"""The bundled Converse.js client at /chat/, driven in headless Chromium (Playwright).

Two users log in through the browser (XMPP over WebSocket), one sends a message and an
image (XEP-0363 upload, when the upload plugin is loaded), the other sees both. Over BOSH
(/chat/?transport=bosh), a browser user and a TCP user exchange messages.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.support.browser import CHROMIUM, launch_args, require_browser, send_text
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_browser()
    yield from start_server(tmp_path_factory.mktemp("webclient"), "sqlite", ca)


def png(path: Path) -> Path:
    """A tiny valid PNG (a 2x2 red square) written without extra dependencies."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0,
                                                                      0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


async def browser_login(browser: Any, url: str, user: str, password: str) -> Any:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(url)
    await page.fill("#converse-login-jid", user)
    await page.fill("#converse-login-password", password)
    await page.click("button[type=submit]")
    await page.wait_for_selector("converse-roster", state="attached", timeout=60000)
    return page


def test_two_browsers_chat_with_text_and_image(srv: ServerProcess, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    a, apw = srv.new_user("alice")
    b, bpw = srv.new_user("bob")
    url = f"https://localhost:{srv.https_port}/chat/"

    async def body() -> None:
        # make them contacts first, as users would have done earlier
        ca = await connect(srv, a + "/setup")
        cb = await connect(srv, b + "/setup")
        await ca.get_roster()
        await cb.get_roster()
        ca.send_presence(pto=b, ptype="subscribe")
        await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        cb.send_presence(pto=a, ptype="subscribed")
        cb.send_presence(pto=a, ptype="subscribe")
        await ca.next_presence(where=lambda p: p["type"] == "subscribe")
        ca.send_presence(pto=b, ptype="subscribed")
        await ca.close()
        await cb.close()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=launch_args(srv))
            alice = await browser_login(browser, url, a.split("@")[0], apw)
            bob = await browser_login(browser, url, b.split("@")[0], bpw)
            await alice.click(f"text={b}")
            await send_text(alice, f"converse-chat[jid='{b}']", "Hello Bob, from a browser")
            await bob.click(f"text={a}")
            await bob.wait_for_selector("text=Hello Bob, from a browser", timeout=60000)
            uploads = await alice.locator("input.fileupload").count()
            if uploads:
                await alice.set_input_files("input.fileupload", str(png(tmp_path / "red.png")))
                img = bob.locator("converse-chat-message img, .chat-msg img").last
                await img.wait_for(state="attached", timeout=60000)
                src = await img.get_attribute("src")
                assert src and "red.png" in src
            else:
                pytest.fail("the chat toolbar offers no file upload (XEP-0363) to send images")
            await browser.close()

    run(body(), timeout=180)


def test_converse_over_bosh_chats_with_a_tcp_user(srv: ServerProcess) -> None:
    """/chat/?transport=bosh: Converse.js logs in over BOSH (XEP-0206, no WebSocket) and
    exchanges messages with a user on TCP."""
    from playwright.async_api import async_playwright

    a, apw = srv.new_user("boshweb")
    b, _ = srv.new_user("tcp")
    url = f"https://127.0.0.1:{srv.https_port}/chat/?transport=bosh"

    async def body() -> None:
        ca = await connect(srv, a + "/setup")
        cb = await connect(srv, b + "/tcp")
        await ca.get_roster()
        await cb.get_roster()
        ca.send_presence(pto=b, ptype="subscribe")
        await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        cb.send_presence(pto=a, ptype="subscribed")
        cb.send_presence(pto=a, ptype="subscribe")
        await ca.next_presence(where=lambda p: p["type"] == "subscribe")
        ca.send_presence(pto=b, ptype="subscribed")
        await ca.close()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=launch_args(srv))
            ctx = await browser.new_context()
            page = await ctx.new_page()
            posts: list[str] = []
            sockets: list[str] = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
            page.on("websocket", lambda ws: sockets.append(ws.url))
            await page.goto(url)
            await page.fill("#converse-login-jid", a.split("@")[0])
            await page.fill("#converse-login-password", apw)
            await page.click("button[type=submit]")
            await page.wait_for_selector("converse-roster", state="attached", timeout=60000)
            # The browser's session is online: its presence reached the TCP user.
            await cb.next_presence(where=lambda pr: str(pr["from"]).startswith(a + "/")
                                   and pr["type"] != "unavailable", timeout=60)
            cb.send_message(mto=a, mbody="Hello browser, from a terminal", mtype="chat")
            await page.click(f"text={b}")
            await page.wait_for_selector("text=Hello browser, from a terminal", timeout=60000)
            await send_text(page, f"converse-chat[jid='{b}']", "Hello terminal, over BOSH")
            got = await cb.next_message(where=lambda m: m["type"] == "chat", timeout=60)
            assert got["body"] == "Hello terminal, over BOSH"
            assert any(u.endswith("/http-bind") for u in posts), posts
            assert not sockets, sockets
            await browser.close()
        await cb.close()

    run(body(), timeout=180)
