"""CORS for XEP-0363 uploads with ``cors_origins`` restricted: raw requests (preflight,
PUT, GET, early refusals) from an allowed and a foreign origin, and a page of another origin
in headless Chromium uploading with fetch() and reading the file back, as a web client does.
The default ("*") is covered in test_upload.py."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import start_server
from tests.integration.test_upload import (
    http_request,
    new_slot,
    put,
    stored_file,
    upload_config,
)
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

WEB = "https://webclient.example"  # the allowed origin
EVIL = "https://elsewhere.example"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Page(BaseHTTPRequestHandler):
    """An empty page: a web client's origin for the browser test."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>client</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[str, str]]:
    """Two real origins on loopback (the allowed one, a foreign one). Playwright's request
    interception is not used for them: with it, Playwright answers CORS preflights itself."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Page) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        a, b = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
        yield a, b
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory,
        pages: tuple[str, str]) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("upload-cors"), "sqlite", ca,
                            config=upload_config(cors_origins=[WEB, pages[0]]))


def preflight(srv: ServerProcess, url: str, origin: str) -> dict[str, str]:
    r = http_request(srv, "OPTIONS", url, headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204
    return {k.lower(): v for k, v in r.headers.items()}


def test_only_the_listed_origin_is_allowed(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("c")
    slot = new_slot(srv, jid, "a.txt", 3, "text/plain")
    ok = preflight(srv, slot.put, WEB)
    assert ok["access-control-allow-origin"] == WEB  # echoed, not "*"
    assert "PUT" in ok["access-control-allow-methods"]
    assert "content-type" in ok["access-control-allow-headers"].lower()
    assert "origin" in ok.get("vary", "").lower()  # caches keep the answers apart
    bad = preflight(srv, slot.put, EVIL)
    assert "access-control-allow-origin" not in bad
    assert "access-control-allow-methods" not in bad
    r = put(srv, slot, b"abc", "text/plain", {"Origin": WEB})
    assert r.status == 201 and r.header("Access-Control-Allow-Origin") == WEB
    r = http_request(srv, "GET", slot.get, headers={"Origin": EVIL})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") is None
    r = http_request(srv, "GET", slot.get, headers={"Origin": WEB})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == WEB


def test_refusals_before_the_body_carry_cors_headers(srv: ServerProcess) -> None:
    """A PUT refused from its headers alone (xmppd.web.BodyRefused) is answered with the
    CORS headers too, so the page that sent it sees the status instead of a network error."""
    jid, _ = srv.new_user("r")
    slot = new_slot(srv, jid, "b.txt", 3, "text/plain")
    r = http_request(srv, "PUT", slot.put, b"", headers={
        "Origin": WEB, "Content-Length": str(10 * 1024 * 1024)})
    assert r.status == 413 and r.header("Access-Control-Allow-Origin") == WEB
    unsigned = slot.put.split("?")[0]
    r = http_request(srv, "PUT", unsigned, b"abc", headers={"Origin": WEB,
                                                             "Content-Length": "3"})
    assert r.status == 403 and r.header("Access-Control-Allow-Origin") == WEB
    r = http_request(srv, "PUT", unsigned, b"abc", headers={"Origin": EVIL,
                                                             "Content-Length": "3"})
    assert r.status == 403 and r.header("Access-Control-Allow-Origin") is None


def test_browser_page_of_another_origin_uploads_and_downloads(
        srv: ServerProcess, pages: tuple[str, str]) -> None:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        async_playwright = None  # type: ignore[assignment]
    if not os.path.exists(CHROMIUM) or async_playwright is None:
        msg = "browser test needs chromium and playwright"
        if os.environ.get("CI"):
            pytest.fail(msg)  # as tests.support.browser.require_browser does
        pytest.skip(msg)

    from tests.support.browser import launch_args

    jid, _ = srv.new_user("b")
    data = "Grüße aus dem Browser\n" * 100
    good = new_slot(srv, jid, "browser.txt", len(data.encode()), "text/plain")
    refused = new_slot(srv, jid, "refused.txt", len(data.encode()), "text/plain")

    script = """async ([put, get, body]) => {
        try {
            const up = await fetch(put, {method: "PUT", body: body,
                                         headers: {"Content-Type": "text/plain"}});
            const down = await fetch(get);
            return {put: up.status, get: down.status, body: await down.text(),
                    disposition: down.headers.get("Content-Disposition")};
        } catch (e) {
            return {error: String(e)};
        }
    }"""

    async def body() -> tuple[dict[str, object], dict[str, object]]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM,
                                              args=launch_args(srv))
            try:
                ctx = await browser.new_context()
                page = await ctx.new_page()
                await page.goto(f"{pages[0]}/")
                ok = await page.evaluate(script, [good.put, good.get, data])
                await page.goto(f"{pages[1]}/")
                no = await page.evaluate(script, [refused.put, refused.get, data])
                return ok, no
            finally:
                await browser.close()

    ok, no = run(body(), timeout=120)
    # the preflight passed, the PUT stored the file, the GET and an exposed header are readable
    disposition = str(ok.pop("disposition", ""))
    assert ok == {"put": 201, "get": 200, "body": data}, ok
    assert disposition.startswith("inline;") and "filename*=UTF-8''browser.txt" in disposition
    assert stored_file(srv, good).read_bytes() == data.encode()
    # the foreign page's preflight got no CORS answer: the browser never sent the PUT
    assert "error" in no and "fetch" in str(no["error"]).lower(), no
    assert not stored_file(srv, refused).exists()
    assert put(srv, refused, data.encode(), "text/plain").status == 201  # slot still unused
