"""A small BOSH client (XEP-0124/XEP-0206) over real HTTP, for the integration tests.

Each request is its own HTTP/1.1 connection (``Connection: close``), which BOSH allows
(XEP-0124 §4) and which lets a test hold several requests open at once.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from tests.support.server import ServerProcess

NS = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "http://etherx.jabber.org/streams"
C = "{jabber:client}"
B = f"{{{NS}}}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    raw: bytes
    body: ET.Element | None = field(default=None)

    @property
    def attrs(self) -> dict[str, str]:
        assert self.body is not None, self.raw
        return dict(self.body.attrib)

    @property
    def children(self) -> list[ET.Element]:
        assert self.body is not None, self.raw
        return list(self.body)

    def condition(self) -> str | None:
        assert self.body is not None and self.body.get("type") == "terminate", self.raw
        return self.body.get("condition")


def context(srv: ServerProcess) -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=str(srv.ca.ca_file))
    c.check_hostname = False
    return c


async def http(srv: ServerProcess, data: bytes, secure: bool = True, method: str = "POST",
               path: str = "/http-bind", headers: dict[str, str] | None = None) -> Response:
    """One HTTP request on its own connection; the whole response."""
    port = srv.https_port if secure else srv.ports["http"][0]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context(srv) if secure else None,
        server_hostname="localhost" if secure else None)
    head = {"Host": f"localhost:{port}", "Content-Type": "text/xml; charset=utf-8",
            "Content-Length": str(len(data)), "Connection": "close", **(headers or {})}
    writer.write(f"{method} {path} HTTP/1.1\r\n".encode()
                 + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head_bytes, _, content = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        assert len(content) == int(hdrs["content-length"]), (hdrs, content)
    assert "chunked" not in hdrs.get("transfer-encoding", "")  # XEP-0124 §5
    res = Response(status, hdrs, content)
    if content.startswith(b"<body"):
        res.body = ET.fromstring(content)
    return res


def wrapper(attrs: dict[str, str], payload: str = "") -> bytes:
    parts = [f"<body xmlns='{NS}' xmlns:xmpp='{XBOSH}'"]
    parts += [f" {k}='{v}'" for k, v in attrs.items()]
    return ("".join(parts) + (f">{payload}</body>" if payload else "/>")).encode()


class BoshClient:
    """One BOSH session, driven a request at a time (or several, with asyncio tasks)."""

    def __init__(self, srv: ServerProcess, secure: bool = True) -> None:
        self.srv = srv
        self.secure = secure
        self.rid = secrets.randbelow(2 ** 40) + 2 ** 20  # §14.1: large and random
        self.sid = ""
        self.created: dict[str, str] = {}

    def next_rid(self) -> int:
        rid = self.rid
        self.rid += 1
        return rid

    async def send(self, payload: str = "", rid: int | None = None, sid: str | None = None,
                   **attrs: str) -> Response:
        """A request of this session (the next rid unless given)."""
        a = {"rid": str(self.next_rid() if rid is None else rid),
             "sid": self.sid if sid is None else sid, **attrs}
        return await http(self.srv, wrapper(a, payload), secure=self.secure)

    async def create(self, to: str = "localhost", **attrs: str) -> Response:
        a = {"rid": str(self.next_rid()), "to": to, "wait": "60", "hold": "1", "ver": "1.11",
             "xml:lang": "en", "xmpp:version": "1.0", **attrs}
        res = await http(self.srv, wrapper(a), secure=self.secure)
        if res.body is not None and res.body.get("sid"):
            self.sid = res.body.get("sid", "")
            self.created = res.attrs
        return res

    async def login(self, jid: str, password: str, resource: str = "bosh") -> str:
        """Session creation, SASL PLAIN, restart (XEP-0206 §5), bind: the full JID."""
        res = await self.create()
        features = next(c for c in res.children if c.tag == f"{{{STREAMS}}}features")
        assert features.find(f"{{{SASL}}}mechanisms") is not None
        token = base64.b64encode(f"\0{jid.split('@')[0]}\0{password}".encode()).decode()
        res = await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert res.children and res.children[0].tag == f"{{{SASL}}}success", res.raw
        res = await self.send(**{"xmpp:restart": "true", "to": "localhost", "xml:lang": "en"})
        features = res.children[0]
        assert features.tag == f"{{{STREAMS}}}features", res.raw
        assert features.find(f"{{{BIND}}}bind") is not None
        res = await self.send(f"<iq xmlns='jabber:client' type='set' id='bind'>"
                              f"<bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>")
        full = res.children[0].findtext(f"{{{BIND}}}bind/{{{BIND}}}jid")
        assert full == f"{jid}/{resource}", res.raw
        return full

    async def until(self, match: Any, polls: int = 10) -> ET.Element:
        """Poll (empty requests, each held until something comes) until a payload matches."""
        for _ in range(polls):
            res = await self.send()
            for c in res.children:
                if match(c):
                    return c
        raise AssertionError("nothing matched")
