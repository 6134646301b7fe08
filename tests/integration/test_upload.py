"""HTTP File Upload (XEP-0363): slots over XMPP, PUT/GET/HEAD/OPTIONS over HTTPS against the
real server, verified with the test CA, on every storage backend."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import quoteattr

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

NS = "urn:xmpp:http:upload:0"
U = f"{{{NS}}}"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
XDATA = "{jabber:x:data}"
SERVICE = "upload.localhost"
MAX = 5 * 1024 * 1024


def free_port() -> int:
    """The plugin builds URLs from the https listener's configured port, so upload tests give
    it a fixed one (a port-0 listener leaves the service disabled)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def upload_config(**options: Any) -> dict[str, Any]:
    return {
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "https", "port": free_port(), "address": "127.0.0.1"}],
        "plugins": {"upload": {"max_file_size": MAX, **options}},
    }


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"upload-{backend}"), backend, ca,
                            config=upload_config())


# -- helpers shared by the upload test modules ------------------------------------------------
@dataclass
class Slot:
    put: str
    get: str
    headers: dict[str, str]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


async def request_slot(c: Client, filename: str, size: int | str,
                       content_type: str | None = None, to: str = SERVICE) -> Slot:
    iq = c.make_iq_get(ito=to)
    ct = f" content-type={quoteattr(content_type)}" if content_type is not None else ""
    iq.xml.append(ET.fromstring(
        f"<request xmlns='{NS}' filename={quoteattr(filename)} size='{size}'{ct}/>"))
    res = await iq.send()
    slot = res.xml.find(U + "slot")
    assert slot is not None, ET.tostring(res.xml)
    put, get = slot.find(U + "put"), slot.find(U + "get")
    assert put is not None and get is not None
    headers = {h.get("name", ""): h.text or "" for h in put.findall(U + "header")}
    return Slot(put.get("url", ""), get.get("url", ""), headers)


def new_slot(srv: ServerProcess, jid: str, filename: str, size: int | str,
             content_type: str | None = None) -> Slot:
    """Log in as ``jid``, ask for one slot, log out."""

    async def body() -> Slot:
        c = await connect(srv, jid + "/slot")
        slot = await request_slot(c, filename, size, content_type)
        await c.close()
        return slot

    return run(body())


async def slot_error(c: Client, filename: str, size: int | str,
                     content_type: str | None = None) -> IqError:
    with pytest.raises(IqError) as exc:
        await request_slot(c, filename, size, content_type)
    return exc.value


def tls(srv: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(srv.ca.ca_file))


def http_request(srv: ServerProcess, method: str, url: str,
                 body: bytes | Iterable[bytes] | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    """One request to a URL the server handed out (host name checked against the test CA);
    a bare path goes to the server's https listener."""
    parts = urlsplit(url)
    host, port = (parts.hostname or "localhost", parts.port or 443) if parts.scheme else (
        "localhost", srv.https_port)
    conn = http.client.HTTPSConnection(host, port, context=tls(srv), timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def put(srv: ServerProcess, slot: Slot, data: bytes, content_type: str | None = None,
        extra: dict[str, str] | None = None) -> Response:
    headers = {"Content-Length": str(len(data)), **slot.headers, **(extra or {})}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return http_request(srv, "PUT", slot.put, data, headers)


def files_in(srv: ServerProcess) -> list[Path]:
    """Every regular file under the server's temporary folder (its data directory included)."""
    return [p for p in srv.tmp.rglob("*") if p.is_file()]


def stored_file(srv: ServerProcess, slot: Slot) -> Path:
    """Where the server keeps a slot's file: <data_dir>/upload/<domain>/<user folder>/<token>
    (a path that does not exist when there is no such file)."""
    token = urlsplit(slot.get).path.split("/")[2]
    root = srv.tmp / "data" / "upload" / "localhost"
    found = list(root.glob(f"*/{token}"))
    assert len(found) <= 1
    return found[0] if found else root / "none" / token


# -- discovery (§3) ---------------------------------------------------------------------------
def test_service_is_discovered_with_identity_and_max_size(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("d")

    async def body() -> None:
        c = await connect(srv, jid + "/d")
        items = await c.plugin["xep_0030"].get_items(jid="localhost")
        listed = {(i[0], i[2]) for i in items["disco_items"]["items"]}
        assert (SERVICE, "HTTP File Upload") in listed
        info = (await c.plugin["xep_0030"].get_info(jid=SERVICE)).xml
        q = info.find(f"{{{DISCO_INFO}}}query")
        assert q is not None
        idents = [(i.get("category"), i.get("type"), i.get("name"))
                  for i in q.findall(f"{{{DISCO_INFO}}}identity")]
        assert idents == [("store", "file", "HTTP File Upload")]
        assert NS in {f.get("var") for f in q.findall(f"{{{DISCO_INFO}}}feature")}
        form = q.find(XDATA + "x")
        assert form is not None and form.get("type") == "result"
        values = {f.get("var"): [v.text for v in f.findall(XDATA + "value")]
                  for f in form.findall(XDATA + "field")}
        assert values == {"FORM_TYPE": [NS], "max-file-size": [str(MAX)]}
        # the domain itself does not claim the feature; the service has no items
        own = (await c.plugin["xep_0030"].get_info(jid="localhost")).xml
        assert NS not in {f.get("var") for f in own.iter(f"{{{DISCO_INFO}}}feature")}
        none = await c.plugin["xep_0030"].get_items(jid=SERVICE)
        assert list(none["disco_items"]["items"]) == []
        await c.close()

    run(body())


# -- round trips -------------------------------------------------------------------------------
FILES = [
    ("notes.txt", "text/plain; charset=utf-8", "Grüße, Juliet\n".encode(), "inline"),
    ("pixel.png", "image/png", bytes(range(256)) * 3, "inline"),
    ("data.json", "application/json", b'{"a": [1, 2, 3]}', "attachment"),
    ("page.html", "text/html", b"<script>alert(1)</script>", "attachment"),
    ("très cool & «ñ».bin", None, b"\x00\xff" * 1000, "attachment"),
    ("empty.txt", "text/plain", b"", "inline"),
]


@pytest.mark.parametrize("filename,content_type,data,disposition", FILES,
                         ids=[f[0] for f in FILES])
def test_upload_and_download(srv: ServerProcess, filename: str, content_type: str | None,
                             data: bytes, disposition: str) -> None:
    jid, _ = srv.new_user("rt")

    slot = new_slot(srv, jid, filename, len(data), content_type)
    # §4: HTTPS, RFC 3986, non-ASCII percent-encoded, the name kept; PUT and GET same path
    for url in (slot.put, slot.get):
        assert url.startswith(f"https://localhost:{srv.https_port}/{SERVICE}/")
        assert url.isascii() and " " not in url
    assert urlsplit(slot.get).path.endswith("/" + quote(filename, safe=""))
    assert urlsplit(slot.put).path == urlsplit(slot.get).path and urlsplit(slot.put).query
    assert set(slot.headers) <= {"Authorization", "Cookie", "Expires"}
    before = http_request(srv, "GET", slot.get)
    assert before.status == 404  # nothing until the upload is complete
    r = put(srv, slot, data, content_type)
    assert r.status == 201, r.body
    assert r.header("Access-Control-Allow-Origin") == "*"
    got = http_request(srv, "GET", slot.get)
    assert got.status == 200 and got.body == data
    assert got.header("Content-Type") == (content_type or "application/octet-stream")
    assert got.header("Content-Length") == str(len(data))
    assert got.header("Accept-Ranges") == "bytes"
    assert got.header("ETag") and got.header("Last-Modified")
    assert got.header("X-Content-Type-Options") == "nosniff"
    assert got.header("Access-Control-Allow-Origin") == "*"
    assert "Content-Range" in (got.header("Access-Control-Expose-Headers") or "")
    cd = got.header("Content-Disposition") or ""
    assert cd.startswith(disposition + ";")
    assert "filename*=UTF-8''" + quote(filename, safe="!#$&+^`|") in cd
    head = http_request(srv, "HEAD", slot.get)
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(data))
    assert head.header("Content-Type") == got.header("Content-Type")
    assert head.header("ETag") == got.header("ETag")
    assert stored_file(srv, slot).read_bytes() == data


def test_conditional_and_range_requests(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("rg")
    data = bytes(i % 251 for i in range(10000))

    slot = new_slot(srv, jid, "ranges.bin", len(data), "application/octet-stream")
    assert put(srv, slot, data, "application/octet-stream").status == 201
    full = http_request(srv, "GET", slot.get)
    etag, modified = full.header("ETag") or "", full.header("Last-Modified") or ""

    def get(range_: str | None = None, **extra: str) -> Response:
        headers = dict(extra)
        if range_ is not None:
            headers["Range"] = range_
        return http_request(srv, "GET", slot.get, headers={
            k.replace("_", "-"): v for k, v in headers.items()})

    r = get("bytes=100-199")
    assert r.status == 206 and r.body == data[100:200]
    assert r.header("Content-Range") == "bytes 100-199/10000"
    assert r.header("Content-Length") == "100"
    r = get("bytes=-300")  # suffix
    assert r.status == 206 and r.body == data[-300:]
    assert r.header("Content-Range") == "bytes 9700-9999/10000"
    r = get("bytes=9990-")  # open-ended
    assert r.status == 206 and r.body == data[9990:]
    r = get("bytes=9000-20000")  # clamped to the end
    assert r.status == 206 and r.header("Content-Range") == "bytes 9000-9999/10000"
    r = get("bytes=0-9,5-19")  # overlapping ranges coalesce into one part
    assert r.status == 206 and r.body == data[:20]
    r = get("bytes=0-4, 5000-5004")  # two parts: multipart/byteranges (RFC 7233 §4.1)
    assert r.status == 206
    ctype = r.header("Content-Type") or ""
    assert ctype.startswith("multipart/byteranges; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    parts = [p for p in r.body.split(b"--" + boundary) if p not in (b"", b"--\r\n")]
    assert len(parts) == 2 and len(r.body) == int(r.header("Content-Length") or 0)
    for part, (first, last) in zip(parts, ((0, 4), (5000, 5004)), strict=True):
        head, _, content = part.partition(b"\r\n\r\n")
        assert f"Content-Range: bytes {first}-{last}/10000".encode() in head
        assert content.removesuffix(b"\r\n") == data[first:last + 1]
    r = get("bytes=10000-")  # §4.4: nothing satisfiable
    assert r.status == 416 and r.header("Content-Range") == "bytes */10000"
    for ignored in ("bytes=5-1", "lines=1-2", "bytes=abc", "bytes"):  # §3.1: ignored
        r = get(ignored)
        assert r.status == 200 and r.body == data, ignored
    assert get("bytes=0-9", If_Range=etag).status == 206  # §3.2
    r = get("bytes=0-9", If_Range='"something-else"')
    assert r.status == 200 and r.body == data
    assert get("bytes=0-9", If_Range=modified).status == 206
    assert get("bytes=0-9", If_Range="W/" + etag).status == 200  # weak never matches
    r = get(If_None_Match=etag)  # RFC 7232 §3.2
    assert r.status == 304 and r.body == b"" and r.header("ETag") == etag
    assert get(If_None_Match=f'"x", {etag}').status == 304
    assert get(If_None_Match='"x"').status == 200
    assert get(If_Modified_Since=modified).status == 304
    assert get(If_Modified_Since="Sat, 01 Jan 2000 00:00:00 GMT").status == 200


def test_cors_preflight_and_headers(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("co")

    slot = new_slot(srv, jid, "web.txt", 3, "text/plain")
    pre = http_request(srv, "OPTIONS", slot.put, headers={
        "Origin": "https://webclient.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-requested-with"})
    assert pre.status in (200, 204)
    assert pre.header("Access-Control-Allow-Origin") == "*"
    methods = {m.strip() for m in (pre.header("Access-Control-Allow-Methods") or "").split(",")}
    assert {"GET", "HEAD", "PUT"} <= methods
    allowed = {h.strip().lower() for h in (pre.header("Access-Control-Allow-Headers") or ""
                                           ).split(",")}
    assert {"content-type", "x-requested-with", "authorization", "range"} <= allowed
    assert int(pre.header("Access-Control-Max-Age") or 0) > 0
    r = put(srv, slot, b"abc", "text/plain", {"Origin": "https://webclient.example"})
    assert r.status == 201 and r.header("Access-Control-Allow-Origin") == "*"
    r = http_request(srv, "GET", slot.get, headers={"Origin": "https://webclient.example"})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == "*"
    exposed = {h.strip().lower() for h in (r.header("Access-Control-Expose-Headers") or ""
                                           ).split(",")}
    assert {"content-disposition", "content-range", "etag"} <= exposed
    r = http_request(srv, "DELETE", slot.get)
    assert r.status == 405 and "PUT" in (r.header("Allow") or "")
    # refused before the body is read (xmppd.web.BodyRefused): the page can read the status
    r = http_request(srv, "PUT", slot.put.split("?")[0], b"abc", headers={
        "Origin": "https://webclient.example", "Content-Length": "3"})
    assert r.status == 403 and r.header("Access-Control-Allow-Origin") == "*"


# -- bad input ---------------------------------------------------------------------------------
def test_put_needs_a_valid_signature(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("sg")

    slot = new_slot(srv, jid, "signed.txt", 4, "text/plain")
    base, _, query = slot.put.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    sig, exp = params["s"], params["e"]
    forged = ("A" if sig[0] != "A" else "B") + sig[1:]
    for url in (base, f"{base}?e={exp}", f"{base}?e={exp}&s={forged}",
                f"{base}?e={int(exp) + 3600}&s={sig}",  # a later expiry is not signed
                f"{base}?e=x&s={sig}", slot.get.replace("signed.txt", "other.txt") + "?" + query):
        r = http_request(srv, "PUT", url, b"data", {"Content-Type": "text/plain"})
        assert r.status == 403, (url, r.status, r.body)
    assert http_request(srv, "GET", slot.get).status == 404
    # a different size or type than the slot's is refused even with the right signature
    assert put(srv, slot, b"dat", "text/plain").status == 400
    assert put(srv, slot, b"data", "image/png").status == 415
    assert put(srv, slot, b"data").status == 415
    assert http_request(srv, "GET", slot.get).status == 404
    assert put(srv, slot, b"data", "Text/Plain").status == 201  # media types ignore case


def test_put_larger_than_the_slot_stores_nothing(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("big")

    slot = new_slot(srv, jid, "small.bin", 1000)
    files = set(files_in(srv))
    r = put(srv, slot, b"x" * 200_000)  # big enough for twisted to buffer it on disk
    assert r.status == 413, r.body
    assert http_request(srv, "GET", slot.get).status == 404
    assert set(files_in(srv)) == files and not stored_file(srv, slot).exists()
    r = put(srv, slot, b"y" * 1000)  # the slot is still there for the right body
    assert r.status == 201
    assert http_request(srv, "GET", slot.get).body == b"y" * 1000


def test_a_slot_takes_one_put(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("once")

    slot = new_slot(srv, jid, "once.txt", 5, "text/plain")
    assert put(srv, slot, b"first", "text/plain").status == 201
    r = put(srv, slot, b"other", "text/plain")
    assert r.status == 409
    assert http_request(srv, "GET", slot.get).body == b"first"
    assert stored_file(srv, slot).read_bytes() == b"first"


def test_path_traversal_is_refused(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("pt")

    async def body() -> Slot:
        c = await connect(srv, jid + "/pt")
        for name in ("../../evil.txt", "..", ".", "a/b.txt", "..\\..\\evil.txt", "evil\x7f.txt",
                     "evil\u202egpj.exe", "x" * 300):
            err = await slot_error(c, name, 10)
            assert err.condition == "bad-request", name
        slot = await request_slot(c, "fine.txt", 4, "text/plain")
        await c.close()
        return slot

    slot = run(body())
    before = set(files_in(srv))
    base, _, query = slot.put.partition("?")
    prefix = base.rsplit("/", 1)[0]  # .../<service>/<token>
    for path in (f"/{SERVICE}/../../evil.txt", f"/{SERVICE}/%2e%2e/%2e%2e/evil.txt",
                 f"{prefix}/..%2F..%2Fevil.txt?{query}", f"{prefix}/fine.txt/..?{query}",
                 f"/{SERVICE}/{'A' * 24}/%2e%2e%2f%2e%2e%2fevil.txt?{query}",
                 f"{prefix}/%00evil.txt?{query}", f"{prefix}/%ff.txt?{query}"):
        r = http_request(srv, "PUT", path, b"evil", {"Content-Type": "text/plain"})
        assert r.status in (400, 403), (path, r.status)
        g = http_request(srv, "GET", path)
        assert g.status == 404, (path, g.status)
    assert set(files_in(srv)) == before
    assert not [p for p in srv.tmp.parent.rglob("evil*") if p.name in ("evil", "evil.txt")]
    assert put(srv, slot, b"fine", "text/plain").status == 201


def test_slot_request_errors(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("se")

    async def body() -> None:
        c = await connect(srv, jid + "/se")
        for size in ("-1", "abc", "1e3", " 5", "", "+5", "\uff15"):
            err = await slot_error(c, "f.txt", size)
            assert (err.condition, err.etype) == ("bad-request", "modify"), size
        for size in (MAX + 1, "99999999999999999999999999999999999999999999999999"):
            err = await slot_error(c, "f.txt", size)
            assert (err.condition, err.etype) == ("not-acceptable", "modify")
            limit = err.iq.xml.find(f"{{jabber:client}}error/{U}file-too-large/{U}max-file-size")
            assert limit is not None and limit.text == str(MAX)
            assert err.iq.xml.find(U + "request") is not None  # the request is echoed (§5)
        for ctype in ("text/plain\r\nSet-Cookie: x=y", "no-slash", "text/plain; =x", "é/x"):
            err = await slot_error(c, "f.txt", 10, ctype)
            assert err.condition == "bad-request", ctype
        iq = c.make_iq_get(ito=SERVICE)  # no size at all
        iq.xml.append(ET.fromstring(f"<request xmlns='{NS}' filename='f.txt'/>"))
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert exc.value.condition == "bad-request"
        iq = c.make_iq_set(ito=SERVICE)  # a set of anything is not served
        iq.xml.append(ET.fromstring(f"<request xmlns='{NS}' filename='f.txt' size='1'/>"))
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert exc.value.condition == "service-unavailable"
        assert (await request_slot(c, "max.bin", MAX)).put  # exactly the limit is fine
        await c.close()

    run(body())


def test_deleting_the_account_deletes_its_files(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("gone")
    keep_jid, _ = srv.new_user("keep")

    async def body() -> tuple[Slot, Slot]:
        c = await connect(srv, jid + "/gone")
        k = await connect(srv, keep_jid + "/keep")
        mine = await request_slot(c, "mine.txt", 4, "text/plain")
        theirs = await request_slot(k, "theirs.txt", 4, "text/plain")
        assert put(srv, mine, b"mine", "text/plain").status == 201
        assert put(srv, theirs, b"keep", "text/plain").status == 201
        assert stored_file(srv, mine).exists()
        iq = c.make_iq_set()  # XEP-0077 §3.2: cancel the registration
        iq.xml.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
        try:
            await iq.send(timeout=5)
        except Exception:
            pass  # the server may close the stream before or after answering
        await k.close()
        return mine, theirs

    mine, theirs = run(body())
    for _ in range(100):
        if not stored_file(srv, mine).exists():
            break
        time.sleep(0.05)
    assert not stored_file(srv, mine).exists()
    assert http_request(srv, "GET", mine.get).status == 404
    assert http_request(srv, "GET", theirs.get).body == b"keep"


def test_clients_that_disconnect_midway(srv: ServerProcess) -> None:
    """A PUT cut short stores nothing and leaves the slot usable; a download dropped after a
    few bytes ends quietly (the module's server must log no traceback)."""
    jid, _ = srv.new_user("cut")
    size = 3 * 1024 * 1024
    data = bytes(i % 253 for i in range(size))

    slot = new_slot(srv, jid, "cut.bin", size, "application/octet-stream")
    before = set(files_in(srv))
    url = urlsplit(slot.put)
    raw = tls(srv).wrap_socket(socket.create_connection(("127.0.0.1", srv.https_port)),
                               server_hostname="localhost")
    raw.sendall((f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: localhost\r\n"
                 f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                 ).encode() + data[:200_000])
    raw.close()
    time.sleep(0.3)
    assert set(files_in(srv)) == before
    assert http_request(srv, "GET", slot.get).status == 404
    assert put(srv, slot, data, "application/octet-stream").status == 201
    for _ in range(3):
        conn = http.client.HTTPSConnection("localhost", srv.https_port, context=tls(srv))
        conn.request("GET", urlsplit(slot.get).path)
        r = conn.getresponse()
        assert r.status == 200 and r.read(65536) == data[:65536]
        conn.sock.close()  # type: ignore[union-attr]
        conn.close()
    time.sleep(0.3)
    assert http_request(srv, "GET", slot.get).body == data
